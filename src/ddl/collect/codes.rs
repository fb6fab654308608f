//! The system catalogs' one-letter codes (relkind, contype, typtype, prokind), decoded once,
//! where collect reads them, into enums: nothing after this compares the letters. A letter
//! PostgreSQL 15 does not have is an error (`unexpected`), never a guess.

use super::common::unexpected;
use crate::archive::facts::TypeKind;
use crate::archive::shapes::ConstraintKind;
use crate::error::Result;

/// pg_class.relkind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relkind {
    Table,
    PartitionedTable,
    ForeignTable,
    View,
    MaterializedView,
    Sequence,
    CompositeType,
    Index,
    PartitionedIndex,
    Toast,
}

impl Relkind {
    pub fn decode(code: &str) -> Result<Relkind> {
        Ok(match code {
            "r" => Relkind::Table,
            "p" => Relkind::PartitionedTable,
            "f" => Relkind::ForeignTable,
            "v" => Relkind::View,
            "m" => Relkind::MaterializedView,
            "S" => Relkind::Sequence,
            "c" => Relkind::CompositeType,
            "i" => Relkind::Index,
            "I" => Relkind::PartitionedIndex,
            "t" => Relkind::Toast,
            _ => {
                return Err(unexpected(&format!(
                    "relkind \"{}\"",
                    code.escape_default()
                )))
            }
        })
    }
}

/// pg_constraint.contype, for the kinds collect writes as `ADD CONSTRAINT`.
pub fn contype(code: &str) -> Result<ConstraintKind> {
    Ok(match code {
        "p" => ConstraintKind::PrimaryKey,
        "u" => ConstraintKind::Unique,
        "x" => ConstraintKind::Exclusion,
        "c" => ConstraintKind::Check,
        "f" => ConstraintKind::ForeignKey,
        // 17's named NOT NULL of a domain, 18's of a column.
        "n" => ConstraintKind::NotNull,
        _ => {
            return Err(unexpected(&format!(
                "contype \"{}\"",
                code.escape_default()
            )))
        }
    })
}

/// pg_type.typtype, for the types collect writes (a pseudo-type only as a shell).
pub fn typtype(code: &str) -> Result<TypeKind> {
    Ok(match code {
        "b" => TypeKind::Base,
        "c" => TypeKind::Composite,
        "d" => TypeKind::Domain,
        "e" => TypeKind::Enum,
        "r" => TypeKind::Range,
        "p" => TypeKind::Shell,
        _ => {
            return Err(unexpected(&format!(
                "typtype \"{}\"",
                code.escape_default()
            )))
        }
    })
}

/// pg_proc.prokind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prokind {
    Function,
    Procedure,
    Window,
    Aggregate,
}

impl Prokind {
    pub fn decode(code: &str) -> Result<Prokind> {
        Ok(match code {
            "f" => Prokind::Function,
            "p" => Prokind::Procedure,
            "w" => Prokind::Window,
            "a" => Prokind::Aggregate,
            _ => {
                return Err(unexpected(&format!(
                    "prokind \"{}\"",
                    code.escape_default()
                )))
            }
        })
    }
}
