"""Check results, reports and the errors the guardrail raises."""

from __future__ import annotations

from dataclasses import dataclass, field

# Status of one check:
#   pass  — it ran and found nothing;          block — it ran and found a violation;
#   error — it was enabled but could not run or gave no usable answer (fail closed: blocks);
#   off   — not enabled (by configuration, or "auto" and not installed);
#   skipped — not run because an earlier check already blocked, or there was nothing to check.
STATUSES = ("pass", "block", "error", "off", "skipped")
BLOCKING = frozenset({"block", "error"})


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one subject."""

    check: str
    status: str
    detail: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} is not one of {STATUSES}")

    @property
    def blocks(self) -> bool:
        return self.status in BLOCKING

    @property
    def ran(self) -> bool:
        """True when the check actually evaluated the subject (pass or block)."""
        return self.status in ("pass", "block")

    def line(self) -> str:
        tag = {"pass": "pass", "block": "BLOCK", "error": "ERROR (fail closed)", "off": "off", "skipped": "skipped"}
        text = f"{self.check}: {tag[self.status]}"
        if self.detail:
            text += f" — {self.detail}"
        if self.ran or self.status == "error":
            text += f" [{self.seconds:.2f} s]"
        return text


@dataclass
class Report:
    """Every check's result for one subject (a prompt, a negative prompt, a frame batch)."""

    subject: str
    results: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not any(r.blocks for r in self.results)

    @property
    def blocked_by(self) -> CheckResult | None:
        return next((r for r in self.results if r.blocks), None)

    @property
    def checks_run(self) -> list[str]:
        return [r.check for r in self.results if r.ran]

    def result(self, check: str) -> CheckResult | None:
        return next((r for r in self.results if r.check == check), None)

    def headline(self) -> str:
        culprit = self.blocked_by
        if culprit is None:
            ran = ", ".join(self.checks_run) or "no checks"
            return f"Cosmos3 guardrail [{self.subject}]: SAFE (checks run: {ran})"
        why = "could not run" if culprit.status == "error" else "violation"
        return f"Cosmos3 guardrail [{self.subject}]: BLOCKED by {culprit.check} ({why})"

    def text(self) -> str:
        lines = [self.headline()]
        lines += [f"  {r.line()}" for r in self.results]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def merge_reports(reports: list[Report]) -> str:
    """Human-readable text of several reports, one block each."""
    return "\n".join(r.text() for r in reports)


class GuardrailBlocked(ValueError):
    """Generation was stopped by the guardrail: a violation, or an enabled check that could not run.

    ``reports`` holds the structured reports; the message is their text.
    """

    def __init__(self, reports: Report | list[Report]):
        self.reports = [reports] if isinstance(reports, Report) else list(reports)
        super().__init__(merge_reports(self.reports))


class GuardrailSetupError(FileNotFoundError):
    """Files needed by an enabled check are missing or unusable; lists every problem at once."""

    def __init__(self, problems: list[str], header: str | None = None):
        self.problems = list(problems)
        head = header or (
            f"Cosmos3 guardrail: {len(self.problems)} problem(s) with the files needed by the enabled checks "
            "(fail closed: nothing is generated until they are fixed or the check is switched off in the "
            "guardrail loader)"
        )
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]
