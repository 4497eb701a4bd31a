"""``bisnesgpt sandbox meta``: run the Cloud API emulator in the foreground."""

from __future__ import annotations

import typer

from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState, WebhookConfig

PHONE_OPTION = typer.Option(None, "--phone", help="PHONE_NUMBER_ID[:SECRET] to serve (repeatable). Without a "
                                                  "secret any Bearer token is accepted.")


def meta_command(
    port: int = typer.Option(4010, help="Port to listen on (0: pick a free one)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    webhook_url: str | None = typer.Option(None, "--webhook-url",
                                    help="Where status and inbound webhooks go, e.g. http://127.0.0.1:3002/webhook/meta"),
    app_secret: str | None = typer.Option(None, "--app-secret",
                                   help="Sign webhooks with X-Hub-Signature-256 (the product's META_APP_SECRET)."),
    profile: str = typer.Option("meta", help="meta: a --phone secret is an access token; d360: a 360dialog API key."),
    webhook_token: str | None = typer.Option(None, "--webhook-token",
                                      help="Send X-Webhook-Token with webhooks (360dialog style, D360_WEBHOOK_TOKEN)."),
    phone: list[str] | None = PHONE_OPTION,
    waba_id: str = typer.Option(EmulatedPhone.waba_id, "--waba-id",
                                help="The WhatsApp Business Account the --phone numbers belong to."),
    # Defaults are the emulator's own (a phone's limits, the webhook behaviour), written once there.
    messages_per_second: float = typer.Option(EmulatorState.default_messages_per_second,
                                              help="Throughput per phone before 130429."),
    pair_interval_ms: float = typer.Option(EmulatedPhone.pair_interval_ms,
                                           help="Pair rate: one message per this many ms to one user."),
    pair_burst: int = typer.Option(EmulatedPhone.pair_burst,
                                   help="Pair rate: messages to one user allowed at once before 131056."),
    sent_delay_ms: float = typer.Option(WebhookConfig.sent_delay_ms, help="Delay of the 'sent' webhook."),
    delivered_delay_ms: float = typer.Option(WebhookConfig.delivered_delay_ms,
                                             help="Delay of the 'delivered' webhook."),
    read_delay_ms: float = typer.Option(WebhookConfig.read_delay_ms, help="Delay of the 'read' webhook."),
    jitter_ms: float = typer.Option(WebhookConfig.jitter_ms, help="Random extra delay per webhook."),
    shuffle: bool = typer.Option(WebhookConfig.shuffle, help="Deliver each message's statuses in random order."),
    duplicate_rate: float = typer.Option(WebhookConfig.duplicate_rate,
                                         help="Probability that a status webhook is delivered twice."),
    read_rate: float = typer.Option(WebhookConfig.read_rate, help="Fraction of messages that get a 'read' status."),
    latency_ms: float = typer.Option(EmulatorState.latency_ms, "--latency-ms",
                                     help="Delay before each send request is handled."),
    latency_jitter_ms: float = typer.Option(EmulatorState.latency_jitter_ms, "--latency-jitter-ms",
                                            help="Random extra delay (0..this) per send request: sends in "
                                                 "flight together may overtake each other."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Run a Cloud API look-alike for development without a Meta account (see README)."""
    import socket

    import uvicorn

    from bisnesgpt.sandbox.meta_emulator.app import create_app

    if profile not in ("meta", "d360"):
        typer.echo(f"bisnesgpt: --profile must be meta or d360, not {profile!r}", err=True)
        raise typer.Exit(2)
    state = EmulatorState(default_messages_per_second=messages_per_second, latency_ms=max(0.0, latency_ms),
                          latency_jitter_ms=max(0.0, latency_jitter_ms))
    state.webhook = WebhookConfig(
        url=webhook_url, app_secret=app_secret, profile=profile, token=webhook_token,
        sent_delay_ms=sent_delay_ms, delivered_delay_ms=delivered_delay_ms, read_delay_ms=read_delay_ms,
        jitter_ms=jitter_ms, shuffle=shuffle, duplicate_rate=duplicate_rate, read_rate=read_rate,
    )
    for spec in phone or []:
        phone_id, _, secret = spec.partition(":")
        if not phone_id.isdigit():
            typer.echo(f"bisnesgpt: --phone {spec!r}: the phone number id must be digits", err=True)
            raise typer.Exit(2)
        credential = {"d360_api_key" if profile == "d360" else "access_token": secret or None}
        state.add_phone(phone_id, pair_interval_ms=pair_interval_ms, pair_burst=pair_burst, waba_id=waba_id,
                        **credential)
    app = create_app(state)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    typer.echo(f"Cloud API emulator listening on http://{host}:{bound_port} (profile {profile}, "
               f"{len(state.phones)} phone(s), webhooks {'to ' + webhook_url if webhook_url else 'off'})")
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on"))
    server.run(sockets=[sock])
