"""``secureagg audit``: audit a privacy ledger, calculate epsilon or noise, audit empirically.

``secureagg audit LEDGER.json`` is shorthand for ``secureagg audit report LEDGER.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from secureagg._exceptions import ConfigError
from secureagg.cli._audit_distributed import audit_distributed
from secureagg.cli._out import usable_folder
from secureagg.privacy.accounting import ACCOUNTANTS, Step, epsilons, noise_for_epsilon

__all__ = ["audit"]

_F = TypeVar("_F", bound=Callable[..., Any])
_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _AuditGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to ``report``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["report", *args]
        return super().parse_args(ctx, args)


_ledger_argument = click.argument(
    "ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)


def _out_option(files: str) -> Callable[[_F], _F]:
    """The ``--out`` folder option (default audit-report) for a command writing ``files``."""
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("audit-report"),
        show_default=True,
        help=f"Folder for {files}.",
    )


@click.group(cls=_AuditGroup, context_settings=_CTX, no_args_is_help=True)
def audit() -> None:
    """Audit privacy budgets.

    \b
    secureagg audit LEDGER.json            audit a ledger (same as `audit report LEDGER.json`)
    secureagg audit epsilon -z 1.1 -q 0.01 -s 10000 -d 1e-5
    secureagg audit noise -e 3 -q 0.01 -s 10000 -d 1e-5
    secureagg audit empirical              one-run empirical lower bound (Steinke et al. 2023)
    secureagg audit distributed DDP.json   a client-level distributed-DP ledger
    secureagg audit plan -e 3 -d 2.9e-4 --bits 16 --clients 100 --dim 1048576 -r 1500 -q 0.03
    """


@audit.command(context_settings=_CTX)
@_ledger_argument
@_out_option("audit.md, audit.json and epsilon.png")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Flag accountants of the same analysis that disagree by more than this (relative).",
)
@click.option(
    "--reference",
    type=click.Choice(ACCOUNTANTS),
    default="dpa_pld",
    show_default=True,
    help="The accountant whose epsilon is reported and compared with the budget.",
)
@click.option(
    "--tight-points",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="PRV and PLD only at this many checkpoints per client (0 = after every round).",
)
@click.option("--client", "clients", type=int, multiple=True, help="Audit only these clients.")
@click.option("--rounds", "per_round", is_flag=True, help="Also print every round's figures.")
def report(
    ledger: Path,
    out: Path,
    tolerance: float,
    reference: str,
    tight_points: int,
    clients: tuple[int, ...],
    per_round: bool,
) -> None:
    """Audit LEDGER.json: every client's epsilon after every round, four accountants.

    A client-level distributed-DP ledger (its schema says so) is audited as by
    ``secureagg audit distributed``.
    """
    from secureagg.cli._report_audit import print_audit, write_report
    from secureagg.privacy import PrivacyLedger
    from secureagg.privacy.audit import audit_ledger

    if _is_distributed(ledger):
        audit_distributed(ledger, _console())
        return
    book = PrivacyLedger.load(ledger)  # a bad ledger is refused before --out is created
    usable_folder(out)
    console = _console()
    with console.status("auditing ledger..."):
        result = audit_ledger(
            book,
            reference=reference,
            tolerance=tolerance,
            tight_points=tight_points,
            clients=list(clients) or None,
        )
        paths = write_report(result, out)
    print_audit(console, result, per_round=per_round)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=140)


def _print_table(title: str, columns: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    """A two-column table (name, right-aligned figure) on the console."""
    table = Table(title=title)
    table.add_column(columns[0])
    table.add_column(columns[1], justify="right")
    for name, value in rows:
        table.add_row(name, value)
    _console().print(table)


def _step_options(fn: Any) -> Any:
    fn = click.option("--delta", "-d", type=float, required=True, help="Target delta.")(fn)
    fn = click.option("--steps", "-s", type=int, required=True, help="DP-SGD steps.")(fn)
    fn = click.option(
        "--sample-rate", "-q", type=float, required=True, help="Poisson sample rate per step."
    )(fn)
    return fn


@audit.command(context_settings=_CTX)
@click.option("--noise-multiplier", "-z", type=float, required=True, help="Noise multiplier.")
@_step_options
def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> None:
    """Epsilon after STEPS Poisson-sampled Gaussian steps, from each accountant."""
    figures = epsilons([Step(noise_multiplier, sample_rate, steps)], delta)
    _print_table(
        f"ε for σ={noise_multiplier:g}, q={sample_rate:g}, {steps} steps, δ={delta:g}",
        ("accountant", "ε"),
        [(name, f"{value:.4f}") for name, value in figures.items()],
    )


@audit.command(context_settings=_CTX)
@click.option("--target-epsilon", "-e", type=float, required=True, help="Epsilon to reach.")
@_step_options
@click.option(
    "--accountant",
    type=click.Choice([*ACCOUNTANTS, "all"]),
    default="all",
    show_default=True,
    help="Calibrate with this accountant (PRV and PLD take a few seconds each).",
)
def noise(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, accountant: str
) -> None:
    """Smallest noise multiplier whose epsilon after STEPS steps is at most the target."""
    names = ACCOUNTANTS if accountant == "all" else (accountant,)
    rows = []
    for name in names:
        z = noise_for_epsilon(
            target_epsilon, sample_rate=sample_rate, steps=steps, delta=delta, accountant=name
        )
        rows.append((name, f"{z:.4f}"))
    _print_table(
        f"σ for ε ≤ {target_epsilon:g}, q={sample_rate:g}, {steps} steps, δ={delta:g}",
        ("accountant", "noise multiplier"),
        rows,
    )


@audit.command(context_settings=_CTX)
@click.option("--canaries", "-m", type=int, default=1000, show_default=True, help="Canaries m.")
@click.option("--epochs", type=int, default=20, show_default=True, help="Training epochs.")
@click.option(
    "--noise-multiplier", "-z", type=float, default=1.0, show_default=True, help="DP-SGD noise."
)
@click.option(
    "--sample-rate", "-q", type=float, default=0.05, show_default=True, help="Poisson rate."
)
@click.option("--learning-rate", type=float, default=2.0, show_default=True, help="SGD step.")
@click.option("--delta", "-d", type=float, default=1e-5, show_default=True, help="Delta.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the canary coins and initial weights (the DP noise comes from the OS).",
)
@click.option(
    "--grad-sample-mode",
    type=click.Choice(["auto", "ghost", "hooks"]),
    default="auto",
    show_default=True,
    help="The PrivateTrainer mode audited.",
)
@click.option(
    "--compare/--no-compare",
    default=True,
    show_default=True,
    help="Also run the same setup with the noise off.",
)
@_out_option("empirical.json and empirical.md")
def empirical(
    canaries: int,
    epochs: int,
    noise_multiplier: float,
    sample_rate: float,
    learning_rate: float,
    delta: float,
    seed: int,
    grad_sample_mode: str,
    compare: bool,
    out: Path,
) -> None:
    """One-run empirical lower bound on epsilon (Steinke, Nasr & Jagielski 2023), training
    with secureagg's own PrivateTrainer."""
    from secureagg.cli._report_audit import print_empirical, write_empirical
    from secureagg.privacy.audit import EmpiricalConfig, run_empirical_audit

    config = EmpiricalConfig(
        canaries=canaries,
        epochs=epochs,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        learning_rate=learning_rate,
        delta=delta,
        seed=seed,
        grad_sample_mode=grad_sample_mode,
    )
    usable_folder(out)
    configs = [config]
    if compare and noise_multiplier > 0:
        configs.append(dataclasses.replace(config, noise_multiplier=0.0))
    console = _console()
    runs = []
    for cfg in configs:
        with console.status(f"training with {cfg.canaries} canaries, noise {cfg.noise_multiplier}"):
            runs.append(run_empirical_audit(cfg))
    print_empirical(console, runs)
    console.print("wrote " + ", ".join(str(p) for p in write_empirical(runs, out).values()))


@audit.command(context_settings=_CTX)
@_ledger_argument
def distributed(ledger: Path) -> None:
    """Audit a client-level distributed-DP ledger (run_federated's distributed_ledger).

    Every record is recomputed from its parameters (an edited ledger is refused). The
    guarantee is per client (zero-out: one client's whole update replaced by zero) against
    anyone who sees only the secure-aggregation sums, while at least n_min honest clients
    are in each (under hidden sampling in every round, against the server too); each
    client's figure against the server follows (unamplified in visibly sampled rounds). A
    ledger whose rounds changed sampling mode or rate is described regime by regime.
    """
    audit_distributed(ledger, _console())


def _is_distributed(ledger: Path) -> bool:
    """True when the file's JSON schema is the distributed-DP ledger's."""
    import json

    from secureagg.privacy import DistributedLedger

    try:
        doc = json.loads(ledger.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # PrivacyLedger.load says what is wrong with it
    return isinstance(doc, dict) and doc.get("schema") == DistributedLedger().to_json()["schema"]


@audit.command(context_settings=_CTX)
@click.option("--target-epsilon", "-e", type=float, required=True, help="Epsilon to reach.")
@click.option("--delta", "-d", type=float, required=True, help="Target delta.")
@click.option("--bits", type=int, default=16, show_default=True, help="Bit width b.")
@click.option("--clients", "n_min", type=int, required=True, help="Honest clients per sum.")
@click.option("--dim", type=int, required=True, help="Update length d (padded to 2^k).")
@click.option("--rounds", "-r", type=int, required=True, help="Rounds.")
@click.option("--sample-rate", "-q", type=float, default=None, help="Poisson client rate.")
@click.option(
    "--sampling",
    type=click.Choice(["visible", "hidden"]),
    default="visible",
    show_default=True,
    help="Visible: sampled clients join; hidden: all join, secret coins.",
)
@click.option(
    "--population",
    "n_sum",
    type=int,
    default=None,
    help="Most clients a sum may hold (sizes the modulus; default --clients); required "
    "with --sampling hidden, whose every sum holds the whole population.",
)
@click.option("--clip", type=float, default=1.0, show_default=True, help="L2 clip.")
@click.option(
    "--mechanism", type=click.Choice(["dgauss", "skellam"]), default="dgauss", show_default=True
)
def plan(
    target_epsilon: float,
    delta: float,
    bits: int,
    n_min: int,
    dim: int,
    rounds: int,
    sample_rate: float | None,
    sampling: str,
    n_sum: int | None,
    clip: float,
    mechanism: str,
) -> None:
    """Gamma and local noise of client-level distributed DP for a target epsilon."""
    from secureagg.privacy.distributed import amplification_for
    from secureagg.privacy.distributed import plan as make_plan

    if sampling == "hidden" and (n_sum is None or sample_rate is None):
        raise ConfigError(
            "--sampling hidden needs --sample-rate and --population N: every client of the "
            "population is in every sum, so the modulus must hold N shares"
        )
    if n_sum is not None and n_sum < n_min:
        raise ConfigError(f"--population {n_sum} is below --clients {n_min}")

    p = make_plan(
        mechanism,
        epsilon=target_epsilon,
        delta=delta,
        clip=clip,
        bits=bits,
        n_min=n_min,
        d=dim,
        rounds=rounds,
        sample_rate=sample_rate,
        n_sum=n_min if n_sum is None else n_sum,
        amplification=amplification_for(sampling),
    )
    _print_table(
        f"{mechanism} at {bits} bits: ε={target_epsilon:g}, δ={delta:g}",
        ("quantity", "value"),
        [
            ("honest clients per sum (noise) n_min", f"{n_min}"),
            ("clients a sum may hold (modulus) n_sum", f"{n_min if n_sum is None else n_sum}"),
            ("padded length D", f"{p.dim}"),
            ("gamma", f"{p.gamma:.6g}"),
            ("local noise std (update units)", f"{p.local_std:.6g}"),
            ("local variance (integer units)", f"{p.variance:.6g}"),
            ("effective noise multiplier", f"{p.noise_multiplier:.4f}"),
            ("neighbours", "zero-out (one client's update replaced by zero)"),
            (
                "sampling bound",
                "none"
                if sample_rate is None
                else "visible: joint convexity (zero-out mixtures)"
                if sampling == "visible"
                else "hidden: Zhu-Wang Thm 5 (every client in every sum, secret coins)",
            ),
        ],
    )
