"""dbt in this process (runtime/dbt_session.py): exit statuses as the command line gives them, one parse per
session, and an environment that is the call's alone."""

from __future__ import annotations

import logging
import os

from runtime.dbt_session import CRASHED, SUCCESS, DbtSession, environment
from runtime.envcmd import child_env

PARSED = "partial_parse.msgpack"
# Events dbt sends only while it parses: checking the partial-parse file, writing its timings.
PARSING = {"StateCheckVarsHash", "ParsePerfInfoPath"}


def test_environment_is_set_for_the_call_and_restored_after():
    os.environ["TELEMED_SESSION_KEPT"] = "before"
    os.environ.pop("TELEMED_SESSION_NEW", None)
    try:
        with environment({"TELEMED_SESSION_KEPT": "during", "TELEMED_SESSION_NEW": "during"}):
            assert os.environ["TELEMED_SESSION_KEPT"] == os.environ["TELEMED_SESSION_NEW"] == "during"
        assert os.environ["TELEMED_SESSION_KEPT"] == "before"
        assert "TELEMED_SESSION_NEW" not in os.environ
        with environment({"TELEMED_SESSION_NEW": "during"}, whole=True):
            assert dict(os.environ) == {"TELEMED_SESSION_NEW": "during"}, "a child's whole environment"
        assert os.environ["TELEMED_SESSION_KEPT"] == "before" and "TELEMED_SESSION_NEW" not in os.environ
    finally:
        os.environ.pop("TELEMED_SESSION_KEPT", None)


def test_calls_share_one_parse_and_a_call_dbt_refuses_is_a_crash_with_its_reason(
    base_settings, tmp_path, caplog, monkeypatch
):
    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)  # the test targets set warn
    env = {**child_env(base_settings), "TELEMED_RUN_SCOPE": "nightly", "DBT_LOG_PATH": str(tmp_path / "logs")}
    dbt = DbtSession(env, tmp_path / "monitor")
    outside = {name: os.environ.get(name) for name in env}

    assert dbt.run(["ls", "--select", "tag:monitor", "--output", "name"]) == SUCCESS
    assert (tmp_path / "monitor" / PARSED).exists(), "the project was parsed into the run's target folder"
    logged = (tmp_path / "logs" / "dbt.log").read_text()
    assert "[debug]" in logged and "Running with dbt" in logged, "dbt's log file is written as the command line's"
    assert "monitor_observations" in dbt.output, "the call's output is kept"
    assert dbt.run(["ls", "--resource-type", "test", "--output", "name"]) == SUCCESS
    assert any(line.startswith("not_null_") for line in dbt.output)
    assert PARSING.isdisjoint(dbt.events), "the second call parsed the project again"

    with caplog.at_level(logging.ERROR, logger="runtime.dbt_session"):
        assert dbt.run(["build", "--no-such-option"]) == CRASHED
    assert "dbt build failed to run" in caplog.text and "no-such-option" in caplog.text
    assert {name: os.environ.get(name) for name in env} == outside, "the calls' environment leaked"
