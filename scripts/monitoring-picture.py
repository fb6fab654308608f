#!/usr/bin/env python3
"""The README's monitoring picture (docs/monitoring/pg_backup-metrics.png), made from
backup.metrics() of a real server over time: not a Grafana screenshot (no Grafana here), but the
panels of docs/monitoring/grafana-pg_backup.json drawn with matplotlib from the same series.

  scrape: python3 scripts/monitoring-picture.py scrape OUT.json SECONDS PSQL-ARGS...
          (as the server's user; needs prometheus_client) runs a scenario on the server the psql
          arguments reach (schedules that succeed, one whose runs fail for a while and become
          overdue, a table that grows) and reads backup.metrics() every 2 seconds, parsed with
          prometheus_client.
  render: python3 scripts/monitoring-picture.py render IN.json OUT.png   (needs matplotlib)
"""
import json, subprocess, sys, time


def psql(args, sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", *args, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def scrape(out, seconds, args):
    from prometheus_client.parser import text_string_to_metric_families
    psql(args, """
      CREATE EXTENSION IF NOT EXISTS pg_backup;
      CREATE TABLE IF NOT EXISTS orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g;
      CREATE TABLE IF NOT EXISTS customers AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 5000) g;
      CREATE TABLE IF NOT EXISTS audit (x int);
      SELECT name FROM backup.schedule('orders-10s', '10 seconds', tables => '{orders}', keep_last => 3);
      SELECT name FROM backup.schedule('customers-15s', '15 seconds', tables => '{customers}', keep_last => 3);
      SELECT name FROM backup.schedule('audit-6s', '6 seconds', tables => '{audit}', keep_last => 3);
    """)
    start = time.time()
    series = []
    dropped = restored = False
    while time.time() - start < seconds:
        t = time.time() - start
        # The audit table disappears for a while: its runs fail, it becomes overdue, then recovers.
        if t > seconds * 0.3 and not dropped:
            psql(args, "DROP TABLE audit"); dropped = True
        if t > seconds * 0.7 and not restored:
            psql(args, "CREATE TABLE audit (x int)"); restored = True
        psql(args, "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series((SELECT max(id) + 1 FROM orders), (SELECT max(id) + 1500 FROM orders)) g")
        text = psql(args, "SELECT backup.metrics()")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                series.append({"t": t, "name": s.name, "labels": s.labels, "value": s.value})
        time.sleep(2)
    json.dump(series, open(out, "w"))


def render(inp, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = json.load(open(inp))

    def lines(name):
        by = {}
        for s in data:
            if s["name"] == name and s["labels"].get("schedule", "(manual)") != "(manual)":
                by.setdefault(s["labels"]["schedule"], []).append((s["t"], s["value"]))
        return dict(sorted(by.items()))

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold"})
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), facecolor="#111217")
    colors = ["#73bf69", "#5794f2", "#f2cc0c", "#ff9830", "#b877d9"]
    panels = [
        ("pg_backup_last_success_age_seconds", "Age of the last success (s)", 1),
        ("pg_backup_schedule_overdue", "Overdue (red) or not (green)", 1),
        ("pg_backup_failures_total", "Failed runs (counter)", 1),
        ("pg_backup_last_size_bytes", "Backup size (KiB)", 1024),
        ("pg_backup_last_duration_seconds", "Backup duration (s)", 1),
        ("pg_backup_last_rows", "Rows per backup", 1),
    ]
    for ax, (name, title, scale) in zip(axes.flat, panels):
        ax.set_facecolor("#181b1f")
        for sp in ax.spines.values():
            sp.set_color("#2c3235")
        ax.tick_params(colors="#ccccdc")
        ax.set_title(title + "\n" + name, color="#ccccdc", loc="left")
        ax.grid(color="#2c3235", linewidth=0.6)
        for i, (sched, pts) in enumerate(lines(name).items()):
            xs = [p[0] for p in pts]
            ys = [p[1] / scale for p in pts]
            if name == "pg_backup_schedule_overdue":
                # A state timeline, as Grafana's: one row per schedule, green ok, red overdue.
                for (x0, y0), (x1, _) in zip(pts, pts[1:] + [(pts[-1][0] + 2, 0)]):
                    ax.broken_barh([(x0, x1 - x0)], (i - 0.35, 0.7),
                                   color="#f2495c" if y0 >= 1 else "#73bf69")
                ax.set_yticks(range(len(lines(name))), list(lines(name)))
            else:
                ax.plot(xs, ys, color=colors[i % 5], label=sched, linewidth=1.6)
        ax.set_xlabel("seconds since the first scrape", color="#8e8e8e")
        if name == "pg_backup_schedule_overdue":
            continue
        ax.legend(facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#ccccdc", fontsize=8)
    fig.suptitle("pg_backup: backup.metrics() of a test server scraped every 2 s "
                 "(drawn with matplotlib from the dashboard's series; not a Grafana screenshot)",
                 color="#ccccdc", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())


if __name__ == "__main__":
    if sys.argv[1] == "scrape":
        scrape(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    else:
        render(sys.argv[2], sys.argv[3])
