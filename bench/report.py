"""The printed table of a benchmark run (the JSON holds everything else)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cores(cores: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.2f}" for name, value in sorted(cores.items()))


def _load_row(label: str, load: dict[str, Any]) -> str:
    lat = load["latency_ms"]
    errors = load["errors"] + sum(n for code, n in load["statuses"].items() if not code.startswith("2"))
    return (f"  {label:<30} {_f(load['throughput']):>9} {_f(lat['p50'], 2):>8} {_f(lat['p99'], 2):>8} "
            f"{_f(load['generator_cores'], 2):>7} {errors:>6}  {_cores(load['server_cores'])}")


def _overload_rows(over: dict[str, Any], head: str) -> list[str]:
    lines = ["", "OVERLOAD — 1 api, open loop above its POST saturation (202 accepted, 503 refused fast)", head,
             _load_row("POST saturation (closed)", over["saturation"])]
    for w in over["windows"]:
        lines.append(_load_row(f"POST {w['factor']}x ({_f(w['offered_rate'])}/s)", w))
        by = w["latency_by_status_ms"]
        p99 = {code: _f((by.get(code) or {}).get("p99"), 1) for code in ("202", "503")}
        lines.append(f"    p99 all {_f(w['latency_ms']['p99'], 1)} ms (goal <= 100), 202 {p99['202']} ms, "
                     f"503 {p99['503']} ms; refused {w['refused']} ({w['refused_pct']} %), counted in /metrics "
                     f"{w['refused_in_metrics']}; rows {w['rows_written']} for {w['accepted']} 202s: "
                     f"refused wrote nothing: {w['refused_wrote_nothing']}")
    return lines


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"bisnesgpt benchmarks — {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
             f"node {machine['node'] or '-'}; PostgreSQL/Redis: {results.get('servers')}; "
             f"{results['settings']['duration_s']} s windows"
             + (" (QUICK: harness check, not a measurement)" if results["settings"]["quick"] else "")]
    head = (f"  {'':<30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'gen CPU':>7} {'errors':>6}  "
            "server CPU (cores)")
    if "accept" in results:
        lines += ["", "ACCEPT — durable POST /api/v2/messages/text (202) vs GET /api/health, same server", head]
        for run in results["accept"]["runs"]:
            name = f"{run['server']} x{run['instances']}"
            lines.append(_load_row(f"{name} health  saturation", run["health_saturation"]))
            lines.append(_load_row(f"{name} POST    saturation", run["post_saturation"]))
            lines.append(_load_row(f"{name} health  50 %", run["health_half"]))
            lines.append(_load_row(f"{name} POST    50 %", run["post_half"]))
            waits = run["post_saturation"].get("postgres_busy_backends_pct")
            if waits:
                lines.append("    PostgreSQL backends busy with the POSTs (sampled): "
                             + ", ".join(f"{what} {share} %" for what, share in waits.items()))
            durable = run["durability"]
            lines.append(f"  {name}: ratio POST/health = {_f(run['ratio'], 2)} (goal >= 0.5); "
                         f"every 202 stored: {durable['every_202_stored']}")
        lines.append(f"  note: {results['accept']['health_note']}")
        by = {(r["server"], r["instances"]): r for r in results["accept"]["runs"]}
        if ("granian", 1) in by and ("uvicorn", 1) in by:
            g, u = by[("granian", 1)], by[("uvicorn", 1)]
            lines.append(f"  granian/uvicorn x1: POST {_ratio(g, u, 'post_saturation')}x, "
                         f"health {_ratio(g, u, 'health_saturation')}x")
        elif results["accept"].get("granian_skipped"):
            lines.append(f"  granian: {results['accept']['granian_skipped']}")
    if "overload" in results:
        lines += _overload_rows(results["overload"], head)
    if "e2e" in results:
        e = results["e2e"]
        lines += ["", "END-TO-END, META PATH — accept -> Cloud API emulator receipt (orchestrator: api + meta)"]
        py = e["anchor_python_bullmq"]
        lines.append(f"  anchor: Python bullmq no-op, 1 worker, concurrency 10: {_f(py['rate'])} jobs/s "
                     f"(p50 {_f(py['latency_ms']['p50'])} ms add->process)")
        if e.get("anchor_node_bullmq"):
            nd = e["anchor_node_bullmq"]
            lines.append(f"  anchor: Node BullMQ no-op, concurrency 10:             {_f(nd['rate'])} jobs/s")
        fetch = e.get("fetch_cost")
        if fetch:
            for run in fetch["runs"]:
                lines.append(f"  fetch loop, {fetch['slots']} slots, {_f(fetch['rate'], 0)} jobs/s, {run['loop']:<21}: "
                             f"{_f(run['per_job'], 2)} moveToActive/job, {_f(run['cores'], 3)} cores")
            lines.append(f"  fetch loop CPU ratio product/stock = {_f(fetch['cpu_ratio'], 2)}")
        sat = e["saturation"]
        lines.append(head)
        lines.append(_load_row("saturation (accept side)", sat["load"]))
        lines.append(f"  sustained delivered to the emulator: {_f(sat['sustained_rate'])} msg/s; backlog of "
                     f"{sat.get('backlog')} drained in {_f(sat['backlog_drain_seconds'])} s after the window "
                     f"(meta alone: {_f(sat.get('meta_drain_rate'))} msg/s)")
        per = sat.get("cpu_ms_per_delivered_message") or {}
        lines.append("  CPU ms per delivered message: " + " ".join(f"{k}={v}" for k, v in sorted(per.items())))
        half = e["half_load"]
        lat = half["latency_ms"]
        lines.append(_load_row(f"50 % ({_f(half['offered_rate'], 0)}/s open loop)", half["load"]))
        lines.append(f"  50 %: {half['received_by_emulator']}/{half['messages']} received; accept->receipt "
                     f"p50 {_f(lat['p50'], 2)} ms, p99 {_f(lat['p99'], 2)} ms, p99.9 {_f(lat['p99.9'], 2)} ms, "
                     f"max {_f(lat['max'], 2)} ms (goal p99 <= 25 ms; pacing delay configured to ~0)")
        lines.append(f"  ratio sustained/Python no-op = {_f(e['ratio_python'], 3)} (goal >= 0.6); "
                     f"sustained/Node no-op = {_f(e['ratio_node'], 3)}; meta drain/Python no-op = "
                     f"{_f(e.get('ratio_python_drain'), 3)}")
    if "floor" in results:
        fl = results["floor"]
        lines += ["", "DURABLE FLOOR (bench/floor.py) — one row + one job per POST; worker: sending, POST, sent",
                  head, _load_row("floor saturation (accept side)", fl["load"])]
        per = fl.get("cpu_ms_per_delivered_message") or {}
        lines.append(f"  floor sustained delivered to the emulator: {_f(fl['sustained_rate'])} msg/s; CPU ms per "
                     "delivered message: " + " ".join(f"{k}={v}" for k, v in sorted(per.items())))
        vs = fl.get("product_vs_floor")
        if vs:
            lines.append(f"  product/floor: throughput {_f(vs['throughput_ratio'], 3)} (goal >= 0.5); CPU per message "
                         f"{_f(vs['cpu_per_message_ratio'], 2)}x ({_f(vs['product_cpu_ms'], 2)} vs "
                         f"{_f(vs['floor_cpu_ms'], 2)} ms, emulator excluded; goal <= 2)")
        steady = fl.get("steady")
        if steady:
            lines.append(_load_row(f"floor steady ({_f(steady['load']['offered_rate'], 0)}/s open loop)",
                                   steady["load"]))
        if vs and vs.get("steady_cpu_per_message_ratio") is not None:
            lines.append(f"  steady, both at {_f(vs['steady_rate'], 0)}/s delivered as they come: CPU per message "
                         f"{_f(vs['steady_cpu_per_message_ratio'], 2)}x ({_f(vs['steady_product_cpu_ms'], 2)} vs "
                         f"{_f(vs['steady_floor_cpu_ms'], 2)} ms, emulator excluded; idle upkeep included)")
    if "order" in results:
        o = results["order"]
        lines += ["", f"PER-CHAT ORDER — meta path, {o['chats']} chats over {o['phones']} phones, closed loop, "
                      "ABBA rounds"]
        for r in o["rounds"]:
            lines.append(f"  {r['mode']:<10} delivered {_f(r['delivered_rate']):>8} msg/s "
                         f"(accepted {_f(r['accepted_rate'])}/s; backlog drained in {_f(r['drain_seconds'])} s)")
        lines.append(f"  ordered {_f(o['ordered_rate'])} msg/s vs unordered {_f(o['unordered_rate'])} msg/s: "
                     f"ratio {_f(o['ratio_ordered_unordered'], 3)} (goal >= 0.9)")
        s = o["single_chat"]
        lines.append(f"  one chat: {_f(s['messages_per_second'])} msg/s ({_f(s['round_trip_ms'], 2)} ms per message, "
                     f"measured over {s['received_after_warmup']} of the {s['accepted']} accepted)")
    if "pacing" in results:
        p = results["pacing"]
        lines += ["", "PACING — one Cloud API phone at its configured rate (meta alone, emulator at the same limit)"]
        lines.append(f"  {p['accepted']}/{p['messages']} sent in {_f(p['span_seconds'], 2)} s: "
                     f"{_f(p['achieved_rate'], 2)} msg/s beyond a burst of {p['burst']} "
                     f"against a limit of {_f(p['limit_per_second'], 0)} "
                     f"(ratio {_f(p['ratio_to_limit'], 3)}; 1 = at the limit); "
                     f"130429 errors: {p['throughput_errors_130429']}")
    if "fleet" in results:
        f = results["fleet"]
        lines += ["", "FOOTPRINT — RSS MB (orchestrator: api + wwebjs[sandbox] + meta)"]
        idle, peak = f["rss_idle_mb"], f["under_load"]["rss_peak_mb"]
        for name in sorted(idle):
            lines.append(f"  {name:<14} idle {_f(idle[name]):>7}   under load {_f(peak.get(name)):>7}")
        load = f["under_load"]["load"]
        lines.append(f"  load: {_f(load['offered_rate'], 0)}/s mixed Meta/WhatsApp-Web for {load['duration']} s, "
                     f"p99 accept {_f(load['latency_ms']['p99'], 2)} ms")
        s = f["sessions"]
        lines.append(f"  wwebjs with 0 sessions: {s['rss_mb_0_sessions']} MB")
        for row in s["by_count"]:
            lines.append(f"  wwebjs with {row['sessions']:>3} sandbox sessions: {_f(row['rss_mb']):>7} MB "
                         f"= {_f(row['per_session_mb'], 2)} MB/session")
        lines += ["", "RECOVERY — kill -9 under the orchestrator with default supervision settings"]
        for rec in f["recovery"]:
            extra = ""
            if "in_flight_rerun_s" in rec:
                extra = f", in-flight job re-run {_f(rec['in_flight_rerun_s'], 2)} s (goal <= 10 s)"
            lines.append(f"  {rec['role']:<7} respawn {_f(rec['respawn_s'], 2)} s, /health 200 "
                         f"{_f(rec['health_200_s'], 2)} s{extra}")
    if "spread" in results:
        sp = results["spread"]
        r = sp["rehome"]
        lines += ["", f"SPREAD — sandbox sessions over {sp['processes']} wwebjs processes "
                      f"(lease TTL {r['lease_ttl_s']} s, each process as on its own host)",
                  f"  re-home: {r['sessions']} sessions of a frozen then killed owner ready elsewhere "
                  f"{_f(r['from_freeze_s'], 2)} s after the freeze (now {r['sessions_per_process_after']})",
                  f"  idle process {_f(sp['rss_mb_idle_process'])} MB"]
        for row in sp["by_count"]:
            lines.append(f"  {row['sessions']:>5} sessions: per process {row['sessions_per_process']} "
                         f"(balance ±{_f(row['balance_pct'])} %), RSS {row['rss_mb_per_process']} MB, "
                         f"{_f(row['per_session_mb'], 3)} MB/session")
    if "media" in results:
        m = results["media"]
        lines += ["", f"INBOUND MEDIA — {m['files']} x {m['bytes_each'] // (1024 * 1024)} MB documents: emulator "
                  "webhook -> media-downloads -> store -> GET /api/v1/media"]
        for name in ("webhook_to_stored_ms", "webhook_to_fetched_ms"):
            lat = m[name]
            lines.append(f"  {name:<24} p50 {_f(lat['p50'], 1):>9} ms   p99 {_f(lat['p99'], 1):>9} ms")
        for proc in sorted(m["rss_mb_before"]):
            lines.append(f"  RSS {proc:<5} before {_f(m['rss_mb_before'][proc]):>7} MB, peak "
                         f"{_f(m['rss_mb_peak'].get(proc)):>7} MB (growth {_f(m['rss_growth_mb'][proc])} MB)")
    if "stream" in results:
        w = results["stream"]
        lat = w["commit_to_client_ms"]
        lines += ["", f"EVENT STREAM — {w['events']} events to {w['clients']} WebSocket clients (one api process)",
                  f"  {_f(w['deliveries_per_second'], 0)} deliveries/s; commit -> client p50 {_f(lat['p50'], 1)} ms, "
                  f"p99 {_f(lat['p99'], 1)} ms"]
    lines.append(f"\nwall time {results.get('wall_seconds')} s")
    return "\n".join(lines)


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    x, y = a[key]["throughput"], b[key]["throughput"]
    return f"{x / y:.2f}" if y else "-"
