"""``edgead serve``: a camera, video, stream or folder scored behind a live page and API."""

from __future__ import annotations

from pathlib import Path

import click

from edgead.cli.main import main
from edgead.cli.options import (
    GRAY,
    REQUIRE_SIGNATURE,
    THRESHOLD,
    drift_options,
    region_options,
    runtime_options,
    runtime_settings,
)
from edgead.errors import EdgeadError


@main.command()
@click.argument("bundle", type=click.Path(), required=False)
@click.option(
    "--config",
    "config",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Many streams: a .yaml/.toml file mapping sources to bundles (instead of BUNDLE and "
    "one source); see the README.",
)
@click.option("--camera", default=None, help="Camera device index (e.g. 0).")
@click.option(
    "--video",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Video file (must exist at start; a file that disappears later is reconnected to).",
)
@click.option("--rtsp", default=None, help="Stream URL (rtsp://, http://).")
@click.option(
    "--folder",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Watched folder (must exist at start).",
)
@click.option("--loop/--no-loop", default=False, show_default=True, help="Replay a video file.")
@click.option(
    "--live",
    is_flag=True,
    help="Treat a video file as a camera: drop the oldest frame when inference is behind "
    "(default for a video: score every frame).",
)
@click.option(
    "--give-up-after",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds of retries before a source that never opened is given up (the stream "
    "fails; with one stream the server exits 1). A source that was live is retried for good.",
)
@click.option(
    "--fps",
    default=None,
    type=float,
    help="Pace the source at this rate (default: a video file's own rate; 0: unpaced).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option(
    "--token",
    default=None,
    envvar="EDGEAD_TOKEN",
    help="Token every request must carry (required when --host is not loopback) "
    "[env: EDGEAD_TOKEN].",
)
@THRESHOLD
@REQUIRE_SIGNATURE
@GRAY
@region_options
@drift_options
@runtime_options
@click.option(
    "--out",
    default="edgead-serve",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Anomalous frames go to OUT/events.",
)
@click.option("--max-events", default=1000, show_default=True, help="Events kept on disk.")
@click.option("--max-event-mb", default=512, show_default=True, help="Disk space for events.")
@click.option("--queue", "queue_size", default=2, show_default=True, help="Frames buffered.")
@click.option("--max-upload-mb", default=20, show_default=True)
@click.option(
    "--mqtt",
    default=None,
    metavar="HOST[:PORT]",
    help="Publish every verdict to this MQTT broker (QoS 1; credentials from "
    "EDGEAD_MQTT_USERNAME/EDGEAD_MQTT_PASSWORD). Undelivered verdicts wait in OUT/spool.",
)
@click.option(
    "--mqtt-topic",
    default=None,
    help="Topic template: {stream}, {verdict}, {bundle}, {revision}  [default: "
    "edgead/{stream}/verdict]",
)
@click.option(
    "--webhook",
    default=None,
    metavar="URL",
    help="POST every verdict as JSON (Authorization header from EDGEAD_WEBHOOK_AUTHORIZATION).",
)
@click.option(
    "--opcua",
    default=None,
    metavar="opc.tcp://HOST:PORT",
    help="Write every verdict to variables of this OPC UA server (see --opcua-node).",
)
@click.option(
    "--gate",
    default=None,
    metavar="URL",
    help="The line's state pauses scoring while the line stands: mqtt://HOST[:PORT]/TOPIC or "
    "opc.tcp://HOST:PORT[/PATH]#NODEID (a camera's frames are dropped, files wait).",
)
@click.option(
    "--opcua-node",
    "opcua_nodes",
    multiple=True,
    metavar="FIELD=NODEID",
    help="A variable to write, e.g. verdict=ns=2;s=Line1.Reject (fields: verdict, anomalous, "
    "score, normalized_score, threshold, regions, frame_id, counter). Repeat per field.",
)
@click.option(
    "--reconnect-max-s",
    default=10.0,
    show_default=True,
    help="Longest wait between reconnect attempts (backoff from 0.5 s, doubling).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    bundle: str | None,
    config: str | None,
    camera: str | None,
    video: str | None,
    rtsp: str | None,
    folder: str | None,
    loop: bool,
    live: bool,
    give_up_after: float,
    fps: float | None,
    host: str,
    port: int,
    token: str | None,
    backend: str,
    precision: str,
    search: str,
    device: str | None,
    out: str,
    max_events: int,
    max_event_mb: int,
    queue_size: int,
    max_upload_mb: int,
    mqtt: str | None,
    mqtt_topic: str | None,
    webhook: str | None,
    opcua: str | None,
    opcua_nodes: tuple[str, ...],
    gate: str | None,
    reconnect_max_s: float,
    threshold: float | None,
    min_region_area: int,
    require_region: bool,
    public_key: str | None,
    gray: str,
) -> None:
    """Score a camera, video, stream or folder with BUNDLE behind a live web page and API;
    or, with --config, many sources with several bundles in one server."""
    try:
        from edgead.serve.gates import flag_gate
        from edgead.serve.server import ServeSettings, serve_config
        from edgead.serve.server import serve as run_server
        from edgead.serve.service import ServeOptions
        from edgead.serve.sinks import flag_sinks, sink_specs
        from edgead.serve.sources import make_source
    except ImportError as exc:
        raise EdgeadError(
            f"edgead serve needs the serve extra: pip install 'edgead[serve]' ({exc})"
        ) from exc

    if config is not None:
        given = [
            flag
            for flag, value in (
                ("BUNDLE", bundle),
                ("--camera", camera),
                ("--video", video),
                ("--rtsp", rtsp),
                ("--folder", folder),
                ("--threshold", threshold),
                ("--gate", gate),
            )
            if value is not None
        ]
        if given:
            raise click.UsageError(
                f"--config names the bundles, sources and thresholds; drop {', '.join(given)}"
            )
    elif bundle is None:
        raise click.UsageError("give BUNDLE and a source, or --config FILE")
    settings = ServeSettings(
        host,
        port,
        token,
        max_upload_bytes=max_upload_mb << 20,
        runtime=runtime_settings(ctx),
    )
    options = ServeOptions(
        queue_size=queue_size,
        max_events=max_events,
        max_bytes=max_event_mb << 20,
        backoff_initial=min(0.5, reconnect_max_s),
        backoff_max=reconnect_max_s,
        drift=ctx.obj["drift"],
        give_up_after=give_up_after,
        sinks=sink_specs(
            flag_sinks(mqtt, mqtt_topic, webhook, opcua, opcua_nodes), "sink flags", Path.cwd()
        ),
        gate=flag_gate(gate),
    )
    if config is not None:
        service = serve_config(config, out, settings, options)
        where = f"{out}/<stream>/events"
    else:
        if live and video is None:
            raise click.UsageError("--live marks a --video file as a camera; drop it")
        source = make_source(camera, video, rtsp, folder, fps, loop, live or None)
        service = run_server(bundle, source, out, settings, options)
        where = str(service.first.recorder.folder)
    t = service.totals()
    click.echo(
        f"stopped: {t['frames']} frames scored, {t['anomalies']} anomalous, "
        f"{t['dropped']} dropped, {t['bad_frames']} bad frames, "
        f"{t['events']} events written to {where}"
    )
