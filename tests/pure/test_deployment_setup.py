"""The ``odoo-bin shell`` set-up of kill-test and deploy-test, without Odoo.

Both render their set-up from ``bench.deployment.setup_script``. The text
is run here against a stand-in ``env`` that records what the script asks of
Odoo's ORM, so a broken template shows here rather than after the minutes
an install takes in ``make kill-test`` / ``make deploy-test``.
"""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

from bench.deployment import JOB_CRONS

DEV = Path(__file__).resolve().parents[2] / "dev"
SANDBOX_URL = "http://127.0.0.1:8765/backoffice/api"
GATEWAY = SimpleNamespace(
    webhook_url="http://127.0.0.1:8766/webhook/send",
    webhook_headers={"Authorization": "Bearer 'quoted\" {braces}"},
)


def load_dev(name):
    spec = importlib.util.spec_from_file_location(f"dev_{name}", DEV / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Records:
    """A recordset of the stand-in: ids of one model, fields read from
    what was created."""

    def __init__(self, env, model, ids=()):
        self.env, self.model, self.ids = env, model, list(ids)

    @property
    def id(self):
        return self.ids[0] if self.ids else False

    def __getattr__(self, field):
        if not self.ids:  # an empty recordset reads False, as in Odoo
            return False
        return self.env.rows[self.model][self.ids[0] - 1].get(field, False)

    def sudo(self):
        return self

    def search(self, domain):
        self.env.log.append(("search", self.model, domain))
        return self

    def write(self, values):
        self.env.log.append(("write", self.model, values))

    def create(self, values):
        rows = self.env.rows.setdefault(self.model, [])
        ids = []
        for row in values if isinstance(values, list) else [values]:
            rows.append(dict(row))
            ids.append(len(rows))
        return Records(self.env, self.model, ids)

    def set_param(self, key, value):
        self.env.params[key] = value


class Env:
    """Just what the set-up script calls on Odoo's ``env``."""

    def __init__(self):
        self.rows = {"sicantik.whatsapp.provider": []}
        self.params = {}
        self.log = []
        self.refs = []
        self.commits = 0
        self.cr = SimpleNamespace(commit=self._commit)

    def _commit(self):
        self.commits += 1

    def __getitem__(self, model):
        return Records(self, model)

    def ref(self, xmlid):
        self.refs.append(xmlid)
        return SimpleNamespace(id=len(self.refs))


def run(text, marker, capsys):
    """Run the set-up ``text`` as ``odoo-bin shell`` would (``env`` given);
    returns the stand-in and the JSON line after ``marker``."""
    env = Env()
    exec(compile(text, "<set-up>", "exec"), {"env": env})
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith(marker + " "))
    return env, json.loads(line.split(" ", 1)[1])


def check_common(env, result, connectors):
    """What both tests need: the other connectors archived before anything,
    loopback allowed, every connector reminding through the one webhook
    provider, the jobs' crons named and the only ones left active, all
    committed once."""
    assert env.log[0] == ("search", "sicantik.config", [])
    assert env.log[1] == ("write", "sicantik.config", {"active": False})
    assert env.params["sicantik_connector.allowed_hosts"] == "127.0.0.1 localhost ::1"
    (provider,) = env.rows["sicantik.whatsapp.provider"]
    assert provider["provider_type"] == "webhook"
    assert provider["api_url"] == GATEWAY.webhook_url
    assert json.loads(provider["webhook_headers"]) == GATEWAY.webhook_headers
    made = env.rows["sicantik.config"]
    assert [row["name"] for row in made] == connectors
    for row in made:
        assert row["api_url"] == SANDBOX_URL
        assert row["whatsapp_provider_id"] == 1
        assert (row["quiet_hours_start"], row["quiet_hours_end"]) == (0, 0)
    assert result["configs"] == list(range(1, len(connectors) + 1))
    assert sorted(result["crons"]) == sorted(JOB_CRONS)
    crons = list(result["crons"].values())
    assert env.log[-2:] == [
        ("search", "ir.cron", [("id", "not in", crons)]),
        ("write", "ir.cron", {"active": False}),
    ]
    assert env.commits == 1


def test_kill_test_set_up(capsys):
    kill_test = load_dev("kill_test")
    text = kill_test.set_up_text(SANDBOX_URL, GATEWAY)
    env, result = run(text, "KILLTEST", capsys)
    check_common(env, result, ["Kill test"])
    (config,) = env.rows["sicantik.config"]
    assert (config["rate_limit"], config["max_workers"]) == (10, 4)
    provider = env.rows["sicantik.whatsapp.provider"][0]
    assert provider["webhook_secret"] == kill_test.RECEIPT_SECRET
    for key in ("cron_time_budget", "expiry_chunk_size", "reminder_stale_seconds"):
        assert f"sicantik_connector.{key}" in env.params
    assert "res.users" not in env.rows
    assert result["login"] is None


def test_deploy_test_set_up(capsys):
    deploy_test = load_dev("deploy_test")
    text = deploy_test.set_up_text(SANDBOX_URL, GATEWAY, "pa'ss\"word")
    env, result = run(text, "DEPLOYTEST", capsys)
    check_common(env, result, ["Deploy test 1", "Deploy test 2"])
    for config in env.rows["sicantik.config"]:
        assert config["rate_limit"] == deploy_test.LIMIT
    assert "webhook_secret" not in env.rows["sicantik.whatsapp.provider"][0]
    assert "sicantik_connector.reminder_stale_seconds" in env.params
    (manager,) = env.rows["res.users"]
    assert manager["password"] == "pa'ss\"word"
    assert "sicantik_connector.sicantik_connector_group_manager" in env.refs
    assert result["login"] == manager["login"]


def test_expiry_sync_deploy_bench_set_up(capsys):
    from bench import expiry_sync_deploy

    text = expiry_sync_deploy.set_up_text(SANDBOX_URL, "pw")
    env, result = run(text, "BENCH", capsys)
    # No provider: the connectors remind nobody, the answer has no token.
    assert env.rows["sicantik.whatsapp.provider"] == []
    assert result["webhook_token"] is None
    made = env.rows["sicantik.config"]
    assert len(made) == expiry_sync_deploy.CONNECTORS
    for row in made:
        assert row["api_url"] == SANDBOX_URL
        assert row["rate_limit"] == expiry_sync_deploy.RATE_LIMIT
        assert row["whatsapp_provider_id"] is False
    assert sorted(result["crons"]) == [
        "ir_cron_sync_expiry_dates",
        "ir_cron_sync_permits",
    ]
    crons = list(result["crons"].values())
    assert env.log[-2:] == [
        ("search", "ir.cron", [("id", "not in", crons)]),
        ("write", "ir.cron", {"active": False}),
    ]
    assert result["login"] == "bench_manager"
