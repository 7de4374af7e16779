"""``secureagg demo``: private + secure federated training on a bundled dataset, with a report."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from secureagg.cli._out import usable_folder
from secureagg.demo import CLIENT_LEVEL_DEFAULTS, DATASETS, GRAPHS, PRIVACY_MODES, DemoConfig

__all__ = ["demo"]

_D = DemoConfig()
_F = TypeVar("_F", bound=Callable[..., Any])


def _knob(flag: str, help: str, **kw: Any) -> Callable[[_F], _F]:
    """A ``--flag`` option whose default and type are DemoConfig's field of the same name."""
    name = kw.pop("field", flag.lstrip("-").replace("-", "_"))
    default = getattr(_D, name)
    kw.setdefault("type", type(default))
    return click.option(flag, name, default=default, show_default=True, help=help, **kw)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@_knob(
    "--dataset",
    "scikit-learn's bundled data: breast-cancer (569 patients) or digits (1797 images).",
    metavar="|".join(DATASETS),
)
@_knob("--clients", "Simulated hospitals (>= 4 with dropouts, else >= 3).")
@_knob("--rounds", "Federated rounds.")
@_knob("--local-epochs", "Local epochs per round at each client.")
@_knob("--lr", "Local SGD learning rate.", field="learning_rate")
@_knob(
    "--sample-rate",
    "Poisson sampling rate per DP-SGD step (1 = full-batch DP gradient descent); a client"
    " of n examples samples at 1/ceil(n/ceil(rate*n)), the rate Opacus can give its loader,"
    " which report.json and the ledger record.",
)
@click.option(
    "--noise-multiplier",
    type=float,
    default=None,
    help="Gaussian noise multiplier (instead of --target-epsilon).",
)
@click.option(
    "--target-epsilon",
    type=float,
    default=None,
    help=f"Epsilon each client reaches after the last round  [default: "
    f"{_D.target_epsilon:.2f} unless --noise-multiplier is given]",
)
@_knob("--delta", "DP delta.")
@_knob("--max-grad-norm", "Per-example gradient L2 clip (DP-SGD; Opacus' max_grad_norm).")
@click.option(
    "--clip-norm", type=float, default=None, hidden=True, deprecated="use --max-grad-norm"
)
@_knob("--update-clip", "L2 clip of each client's round update (also the quantisation range).")
@_knob("--dropout-rate", "Probability per round that one random client drops at a random stage.")
@_knob("--graph", "complete (SecAgg) or sparse (SecAgg+ Harary graph).", metavar="|".join(GRAPHS))
@click.option(
    "--degree",
    type=int,
    default=None,
    help="Neighbours per client on the sparse graph  [default: protocol helper]",
)
@click.option(
    "--threshold",
    type=int,
    default=None,
    help="Shamir threshold t  [default: majority / protocol helper]",
)
@_knob("--corrupt-fraction", "Colluding clients the sparse graph's helper must tolerate.")
@_knob("--frac-bits", "Fixed-point precision of the encoded updates.")
@_knob("--signed/--unsigned", "Ed25519-signed mode with the consistency round.", field="signed")
@_knob(
    "--weighting",
    "uniform (no patient count leaves a hospital) or examples-public (weights by the true"
    " counts, declared public: the guarantee is then replace-one, not add/remove).",
    metavar="uniform|examples-public",
)
@_knob("--hidden", "Hidden units (0 = logistic regression).")
@_knob("--skew", "Dirichlet concentration of the label split (smaller = more skewed).")
@_knob("--test-fraction", "Share of the data held out for testing (never seen by a client).")
@_knob("--seed", "Seed of the split, initialisation, sampling and noise.")
@_knob(
    "--out",
    "Report folder (created; files in it are replaced).",
    type=click.Path(path_type=Path, file_okay=False),
)
@_knob(
    "--privacy",
    "example: DP-SGD at every client (one record is the unit); client: client-level"
    " distributed DP on a cross-device split (one client's whole update is the unit; noise"
    " shares inside the masked sum). client changes the defaults of --dataset (digits),"
    " --clients (300), --rounds (40), --local-epochs (5), --lr (0.5), --update-clip (0.5)"
    " and --delta (1e-4) unless given.",
    metavar="|".join(PRIVACY_MODES),
)
@_knob("--client-rate", "--privacy client: each client's chance to join a round (its OS coin).")
@_knob("--bits", "--privacy client: bit width of the masked sum (signal + noise).")
@_knob(
    "--colluders",
    "--privacy client: clients assumed to share their noise with the server (the honest"
    " floor is threshold - colluders).",
)
@click.option("--quiet", is_flag=True, help="No live progress, only the final tables.")
def demo(
    dataset: str,
    clients: int,
    rounds: int,
    local_epochs: int,
    learning_rate: float,
    sample_rate: float,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    delta: float,
    max_grad_norm: float,
    clip_norm: float | None,
    update_clip: float,
    dropout_rate: float,
    graph: str,
    degree: int | None,
    threshold: int | None,
    corrupt_fraction: float,
    frac_bits: int,
    signed: bool,
    weighting: str,
    hidden: int,
    skew: float,
    test_fraction: float,
    seed: int,
    out: Path,
    privacy: str,
    client_rate: float,
    bits: int,
    colluders: int,
    quiet: bool,
) -> None:
    """Train across simulated hospitals with DP-SGD and secure aggregation; write a report.

    Every client trains with Opacus DP-SGD, every round is summed by the secure aggregation
    protocol, and by default one random client per round drops out at a random protocol
    stage. A baseline (same split and seed, no DP, no masking) runs alongside. The report
    folder gets report.md, report.json, ledger.json and PNG plots (see docs/demo.md).
    With --privacy client: client-level distributed DP over simulated devices instead.
    """
    if noise_multiplier is None and target_epsilon is None:
        target_epsilon = _D.target_epsilon
    config = DemoConfig(
        dataset=dataset,
        clients=clients,
        rounds=rounds,
        local_epochs=local_epochs,
        learning_rate=learning_rate,
        sample_rate=sample_rate,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        max_grad_norm=max_grad_norm if clip_norm is None else clip_norm,
        update_clip=update_clip,
        dropout_rate=dropout_rate,
        graph=graph,
        degree=degree,
        threshold=threshold,
        corrupt_fraction=corrupt_fraction,
        frac_bits=frac_bits,
        signed=signed,
        weighting=weighting,
        hidden=hidden,
        skew=skew,
        test_fraction=test_fraction,
        seed=seed,
        out=out,
        privacy=privacy,
        client_rate=client_rate,
        bits=bits,
        colluders=colluders,
    )
    if privacy == "client":
        config = _client_defaults(config)
    config.validate()
    usable_folder(config.out)  # a folder that cannot be written fails before any training
    _run(config, quiet=quiet)


def _client_defaults(config: DemoConfig) -> DemoConfig:
    """``--privacy client``'s own defaults for every knob the user did not give."""
    ctx = click.get_current_context()
    changes = {
        name: value
        for name, value in CLIENT_LEVEL_DEFAULTS.items()
        if name not in ctx.params  # not a flag (min_examples)
        or ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT
    }
    return dataclasses.replace(config, **changes)


def _run(config: DemoConfig, *, quiet: bool) -> None:
    import torch
    from rich.console import Console

    from secureagg.demo import LiveProgress, choose_graph, run_demo, summary_tables, write_report

    note = choose_graph(config).note()  # a bad graph setting fails before any work
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's convergence chatter
    torch.set_num_threads(1)  # tiny models: one thread is faster and bit-reproducible
    console = Console()
    if note is not None:
        console.print(f"[bold yellow]note:[/] {note}")
    start = time.perf_counter()
    if config.privacy == "client":
        console.print(
            f"client-level distributed DP: {config.clients} devices, each joins a round "
            f"with probability {config.client_rate:g} by its own OS coin"
        )
    if config.out.exists() and not config.out.is_dir():
        raise click.UsageError(f"--out {config.out} exists and is not a folder")
    config.out.mkdir(parents=True, exist_ok=True)
    ledger = config.out / "ledger.json"
    ledger.unlink(missing_ok=True)  # a new run: its ledger starts empty
    try:
        with LiveProgress(console, enabled=not quiet) as progress:
            result = run_demo(config, progress, ledger_path=ledger)
    except KeyboardInterrupt:
        kept = (
            f"the ledger of the rounds released so far is in {ledger}"
            if ledger.exists()
            else ("no round finished, so no privacy was spent and no ledger was written")
        )
        console.print(f"interrupted: {kept} (read it with: secureagg audit {ledger})")
        raise SystemExit(130) from None
    report = write_report(result, config.out)
    for table in summary_tables(report):
        console.print(table)
    console.print(
        f"report: {config.out / 'report.md'}  (ledger: {config.out / 'ledger.json'}; "
        f"{time.perf_counter() - start:.1f} s)"
    )
