"""`python -m benchmarks tls` (benchmarks/tls.py): ab's output read right, on outputs ab 2.3
printed against the kit's HTTPS token service, and one run of the real command end to end
with tiny numbers against a spawned stack (the session's Redis and Postgres), asserting that
each workload ran without an error and the mTLS token was bound to its certificate, never how
fast anything was."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import tls
from tests.bench.kit import run_kit

# `ab -k -l -q -r -c 2 -t 1 -n 200000 -e ok.csv -E client.pem ...` with a tls_client_auth
# client (the banner and blank lines as ab prints them)
AB_OK = """\
This is ApacheBench, Version 2.3 <$Revision$>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        Python/3.11
Server Hostname:        127.0.0.1
Server Port:            56535
SSL/TLS Protocol:       TLSv1.3,TLS_AES_256_GCM_SHA384,256,256
Server Temp Key:        X25519 253 bits

Document Path:          /token
Document Length:        Variable

Concurrency Level:      2
Time taken for tests:   1.000 seconds
Complete requests:      3230
Failed requests:        0
Keep-Alive requests:    3230
Total transferred:      2868240 bytes
Total body sent:        875872
HTML transferred:       2183480 bytes
Requests per second:    3229.21 [#/sec] (mean)
Time per request:       0.619 [ms] (mean)
Time per request:       0.310 [ms] (mean, across all concurrent requests)
Transfer rate:          2800.33 [Kbytes/sec] received
                        855.14 kb/s sent
                        3655.47 kb/s total

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.1      0       3
Processing:     0    1   0.3      1       9
Waiting:        0    1   0.3      1       9
Total:          0    1   0.3      1      12

Percentage of the requests served within a certain time (ms)
  50%      1
  66%      1
  75%      1
  80%      1
  90%      1
  95%      1
  98%      1
  99%      1
 100%     12 (longest request)
"""
# its -e file (ab writes every share from 0 to 100; these are the ones read)
AB_OK_CSV = """\
Percentage served,Time in ms
0,0.289
50,0.579
90,0.717
99,1.389
100,12.033
"""
# the same without -l and without the certificate: every answer a 401, and ab counts the
# bodies whose length differs from the first as failed too
AB_ERRORS = """\
Document Path:          /token
Document Length:        82 bytes

Concurrency Level:      2
Time taken for tests:   1.000 seconds
Complete requests:      5930
Failed requests:        5920
   (Connect: 0, Receive: 0, Length: 5920, Exceptions: 0)
Non-2xx responses:      5930
Keep-Alive requests:    5930
Total transferred:      2211780 bytes
Requests per second:    5929.79 [#/sec] (mean)
"""


def test_ab_output_with_its_csv_gives_rate_percentiles_and_keep_alive() -> None:
    result = tls.parse_ab(AB_OK, AB_OK_CSV)
    assert (result.complete, result.seconds, result.rps) == (3230, 1.0, 3229.21)
    assert result.errors == 0 and result.failed_detail == {}
    assert result.keep_alive == 3230  # every request on a kept-alive connection
    assert result.tls == "TLSv1.3,TLS_AES_256_GCM_SHA384,256,256"
    assert tls.percentile(result, 50) == 0.579
    assert tls.percentile(result, 99) == 1.389
    assert tls.percentile(result, 100) == 12.033
    assert tls.percentile(result, 66) == 0.717  # the nearest share printed above


def test_without_the_csv_the_percentiles_come_from_the_table_in_whole_ms() -> None:
    result = tls.parse_ab(AB_OK)
    assert tls.percentile(result, 50) == 1.0
    assert tls.percentile(result, 100) == 12.0


def test_failed_and_non_2xx_requests_are_errors() -> None:
    result = tls.parse_ab(AB_ERRORS)
    assert (result.failed, result.non_2xx, result.write_errors) == (5920, 5930, 0)
    assert result.failed_detail == {"connect": 0, "receive": 0, "length": 5920, "exceptions": 0}
    assert result.errors > 0 and result.tls is None and result.percentiles_ms == {}


def test_output_without_results_is_refused() -> None:
    with pytest.raises(tls.AbError, match="ab printed no results"):
        tls.parse_ab("apr_socket_connect(): Connection refused (111)\n")


def test_ab_command_line_keeps_alive_bounds_requests_after_t_and_hides_the_secret() -> None:
    workload = tls.Workload("cc", "https://127.0.0.1:1/token", "grant_type=x", 1, basic="c2VjcmV0")
    argv = workload.ab_argv(Path("/tmp/x/cc.body"), 15, 32, Path("/tmp/x/cc.csv"))
    assert "-k" in argv and "-l" in argv and argv[-1] == workload.url
    # ab's -t resets the request bound to 50,000: -n must come after it
    assert argv.index("-t") < argv.index("-n")
    assert int(argv[argv.index("-n") + 1]) == tls.request_bound(15) > 15 * 10_000
    shown = tls.redacted_argv(argv)
    assert "c2VjcmV0" not in " ".join(shown) and "Authorization: Basic ***" in shown
    assert "cc.body" in shown and "/tmp/x/cc.body" not in shown


def test_the_mtls_target_is_marked_when_it_is_not_met() -> None:
    def entry(name: str, rps: float) -> dict[str, object]:
        return {
            "name": name,
            "description": tls.DESCRIPTIONS[name],
            "rps": rps,
            "requests": int(rps),
            "latency_ms": {"p50": 1.0, "p99": 2.0},
            "errors": {"total": 0},
            "keep_alive_requests": int(rps),
        }

    entries = [entry("client_credentials", 1000.0), entry("cc_mtls", 650.0)]
    tls.compare(entries)
    assert entries[1]["vs_client_credentials"] == {"rps": 0.65}
    assert entries[1]["target_vs_client_credentials"] == {"rps_at_least": 0.7, "met": False}
    data = {
        "started_at": "t",
        "commit": "c",
        "machine": {"description": "m"},
        "target": {"description": "d", "client_san_uri": "spiffe://x"},
        "generator": "ab",
        "config": {"concurrency": 32, "duration_s": 15, "warmup_s": 2},
        "workloads": entries,
        "notes": [],
    }
    row = next(r for r in tls.table(data).splitlines() if r.startswith("cc_mtls "))
    assert " 0.650 " in row and " 0.70! " in row


def test_the_command_runs_every_workload_without_errors_and_binds_the_mtls_token(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    assert shutil.which("ab"), "ab is missing: ./scripts/test installs it (apache2-utils)"
    out = tmp_path / "tls"
    result = run_kit(
        "tls",
        "--redis-url",
        redis_url,
        "--postgres-url",
        postgres_admin_url,
        "--out",
        str(out),
        "--quiet",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == tls.SCHEMA
    workloads = {w["name"]: w for w in report["workloads"]}
    assert tuple(workloads) == tls.WORKLOADS
    for name, w in workloads.items():
        assert w["rps"] > 0 and w["requests"] > 0, name
        assert w["errors"]["total"] == 0, (name, w["errors"])
        assert w["keep_alive_requests"] == w["requests"], name  # aiohttp keeps HTTP/1.0 alive
        assert w["vs_client_credentials"]["rps"] > 0, name
        assert w["scheme"] == ("http" if name == "client_credentials" else "https"), name
    assert set(workloads["cc_mtls"]["target_vs_client_credentials"]) == {"rps_at_least", "met"}
    check = report["check"]["cc_mtls"]
    assert check["status"] == 200 and check["bound_to_client_certificate"], check
    assert report["check"]["cc_secret_https"]["cnf_x5t#S256"] is None  # no certificate sent
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("tokensvc /token over HTTPS with mutual TLS")
    assert "errors: none" in summary
    assert not re.search(r"Basic (?!\*\*\*)", (out / "report.json").read_text())  # no secret
    assert not (out / "work").exists()  # keys, certificates and bodies are gone
