"""The audit webhook backend for real: the apiserver of the harness posts its audit batches
(``--audit-webhook-config-file``, mode batch, a client certificate of role control-plane)
to a collector's audit webhook input. Every event of the audit log arrives, as the
document the normalizer makes of the log's line."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from kloghub import config, normalize
from tests._procs import Daemon, free_port
from tests.kube import _activity
from tests.kube.test_audit import VOLATILE, _doc_body, _read_docs
from tests.normalize import _fixtures as fx

pytestmark = pytest.mark.integration


def test_the_apiservers_webhook_batches_become_the_same_documents_as_its_log(
    kube, tmp_path
) -> None:
    """If this failed, clusters without access to the audit log file (managed control planes)
    could not send audit events to kloghub, or would get other documents than the log gives."""
    out = tmp_path / "sink.ndjson"
    cert, key = kube.webhook_serving
    collector = Daemon(
        "collector",
        config={
            "level": "run",
            "collector": {
                "listen": f"127.0.0.1:{free_port()}",
                "state_dir": str(tmp_path / "c"),
                "metrics_addr": "127.0.0.1:0",
                "sinks": [{"url": f"file:{out}"}],
                "detections": {"enabled": False},
                "audit_webhook": {
                    "enabled": True,
                    "listen": f"127.0.0.1:{kube.webhook_port}",
                    "cert_file": str(cert),
                    "key_file": str(key),
                    "client_ca_file": str(kube.certs.ca_crt),
                },
            },
        },
        workdir=tmp_path,
    ).start()
    try:
        collector.wait_log("audit webhook listener started")
        ns = f"hook-{uuid.uuid4().hex[:8]}"
        _activity.drive(kube, ns)
        events = _activity.caused_by(kube.audit_events(), ns)
        wanted = {(e["auditID"], e["stage"]) for e in events}
        deadline = time.monotonic() + 60
        while True:
            docs = [_doc_body(d) for d in _read_docs(out)]
            got = {
                (d["kubernetes"]["audit"]["auditID"], d["kubernetes"]["audit"]["stage"]): d
                for d in docs
                if isinstance(d.get("kubernetes"), dict) and "audit" in d["kubernetes"]
            }
            if wanted <= got.keys():
                break
            assert time.monotonic() < deadline, (
                f"{len(wanted - got.keys())} of {len(wanted)} events did not come; "
                + "".join(collector.raw)[-3000:]
            )
            time.sleep(0.3)
    finally:
        assert collector.stop() == 0
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    for n, event in enumerate(events):
        doc = got[(event["auditID"], event["stage"])]
        direct = normalizer(fx.audit_event(orjson.dumps(event).decode(), n)).record["doc"]
        ours = {p: v for p, v in fx.flatten(doc) if not p.startswith(VOLATILE)}
        theirs = {p: v for p, v in fx.flatten(direct) if not p.startswith(VOLATILE)}
        ours.pop("event.original")  # the same event, serialized by the apiserver for each
        original = orjson.loads(theirs.pop("event.original"))
        assert orjson.loads(doc["event"]["original"]) == original
        assert ours == theirs, event["requestURI"]
        assert doc["host"]["name"] == "kube-apiserver"  # the webhook client certificate's CN
