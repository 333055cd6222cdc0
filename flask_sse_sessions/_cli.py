"""``flask sse stats`` and ``flask sse publish SESSION_ID JSON``."""

from __future__ import annotations

import json

import click


def add_commands(group: click.Group) -> None:
    @group.command("stats")
    def stats_command() -> None:
        """Print this process's numbers as JSON (see stats()).

        With Redis they include the backend's: this command's own listener
        (idle: it serves no stream), and the errors it met reaching Redis.
        """
        from ._publish import stats

        click.echo(json.dumps(stats(), indent=2, sort_keys=True))

    @group.command("publish")
    @click.argument("session_id")
    @click.argument("data")
    @click.option("--type", "type_", default="progress", show_default=True, help="The event type.")
    def publish_command(session_id: str, data: str, type_: str) -> None:
        """Publish DATA (a JSON object) to SESSION_ID.

        It goes through the app's backend: with SSE_SESSIONS_REDIS_URL set it
        reaches the streams of every worker and host. With the in-process bus
        only streams of this command's own process could receive it, which
        are none.
        """
        from ._backend import BackendUnavailable
        from ._publish import broadcast

        try:
            value = json.loads(data)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="DATA") from None
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object", param_hint="DATA")
        try:
            reached = broadcast(session_id, type_, value)
        except (TypeError, ValueError, BackendUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"published to {session_id}: reached {reached}")
