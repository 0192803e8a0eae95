"""The agent process: sources → (buffer) → output, run by the daemon."""

from __future__ import annotations

from pathlib import Path

from kloghub import config, core, outputs, runtime, sources

__all__ = ["build"]


def _output(cfg: config.AgentConfig) -> outputs.FileOutput:
    urls = [o.url for o in cfg.outputs]
    if len(urls) != 1:
        raise core.ConfigError(
            [
                f"agent.outputs: got {len(urls)} outputs; this build sends to exactly one "
                "file: or stdout: output (forward:// arrives with the transport, issue #4)"
            ]
        )
    url = urls[0]
    scheme, _, rest = url.partition(":")
    if scheme == "file":
        return outputs.FileOutput(Path(rest))
    if scheme == "stdout":
        return outputs.FileOutput(None)
    raise core.ConfigError(
        [
            f"agent.outputs[0].url: {scheme}: is not available in this build yet "
            "(forward:// arrives with issue #4, store: with issue #7); use file:PATH or stdout:"
        ]
    )


def build(cfg: config.AgentConfig) -> runtime.Daemon:
    """The agent's daemon; raises ConfigError for what cannot run as configured."""
    output = _output(cfg)
    source = sources.LogSource(
        cfg.sources, cfg.parsers, cfg.state_dir, output.send, node_name=cfg.node_name
    )
    readiness = runtime.Readiness()
    return runtime.Daemon("agent", [output, source], cfg.metrics_addr, cfg.drain_timeout, readiness)
