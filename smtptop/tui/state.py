"""What the monitor knows, as its screens read it: the model and the verdicts on its hosts.

The app owns both and keeps them current; each screen is handed this instead of reaching up
to the app, so a screen depends on what it shows, not on the app that shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smtptop.detect import DetectConfig, Verdict
from smtptop.model import Model

DAY = 86400.0
LOGS_FACT = (
    "Zeek's logs: only the last reply of each mail transaction is logged, so a refusal "
    "followed by other replies is missed; no transcripts, no client software"
)
LOGS_TRANSCRIPT = (
    "Zeek's logs hold no transcript. Below is what smtp.log recorded of this connection: "
    "HELO, MAIL FROM and RCPT TO, and the last reply of each mail transaction. The other "
    "commands and replies were not logged."
)


@dataclass(frozen=True, slots=True)
class MonitorState:
    """The live model and verdicts: the app updates both in place, so the screens holding
    this always read the current ones; and the policy the verdicts come from."""

    model: Model
    verdicts: Mapping[str, Verdict]
    policy: DetectConfig

    @property
    def dated(self) -> bool:
        """Whether times need their date: the capture spans more than a day."""
        return self.model.last_ts - self.model.first_ts > DAY

    def name_of(self, ip: str) -> str:
        who = self.model.identities.get(ip)
        return who.name if who is not None else ""

    def facts(self, ip: str) -> list[tuple[str, str]]:
        """Who a host is, for the drill-down."""
        from smtptop.vendor import vendor

        who = self.model.identities.get(ip)
        host = self.model.hosts.get(ip)
        verdict = self.verdicts.get(ip)
        names = ", ".join(f"{n} ({s})" for s, n in who.names.items()) if who else ""
        mac = who.mac if who else ""
        made_by = vendor(mac) if mac else ""
        facts = [
            ("names", names),
            ("MAC", f"{mac} {made_by}".strip()),
            ("client software", verdict.dialect if verdict else ""),
            ("HELO names", ", ".join(host.helos) if host else ""),
        ]
        if self.model.from_logs:
            facts.append(("source", LOGS_FACT))
        return facts
