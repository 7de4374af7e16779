"""``secureagg demo``: private + secure federated training on a bundled dataset, with a report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from secureagg.demo._config import DATASETS, GRAPHS, DemoConfig

__all__ = ["demo"]

_D = DemoConfig()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--dataset",
    default=_D.dataset,
    show_default=True,
    metavar="|".join(DATASETS),
    help="scikit-learn's bundled data: breast-cancer (569 patients) or digits (1797 images).",
)
@click.option(
    "--clients",
    type=int,
    default=_D.clients,
    show_default=True,
    help="Simulated hospitals (>= 4 with dropouts, else >= 3).",
)
@click.option("--rounds", type=int, default=_D.rounds, show_default=True, help="Federated rounds.")
@click.option(
    "--local-epochs",
    type=int,
    default=_D.local_epochs,
    show_default=True,
    help="Local epochs per round at each client.",
)
@click.option(
    "--lr",
    "learning_rate",
    type=float,
    default=_D.learning_rate,
    show_default=True,
    help="Local SGD learning rate.",
)
@click.option(
    "--sample-rate",
    type=float,
    default=_D.sample_rate,
    show_default=True,
    help="Poisson sampling rate per DP-SGD step (1 = full-batch DP gradient descent).",
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
@click.option("--delta", type=float, default=_D.delta, show_default=True, help="DP delta.")
@click.option(
    "--clip-norm",
    type=float,
    default=_D.clip_norm,
    show_default=True,
    help="Per-example gradient L2 clip (DP-SGD).",
)
@click.option(
    "--update-clip",
    type=float,
    default=_D.update_clip,
    show_default=True,
    help="L2 clip of each client's round update (also the quantisation range).",
)
@click.option(
    "--dropout-rate",
    type=float,
    default=_D.dropout_rate,
    show_default=True,
    help="Probability per round that one random client drops at a random stage.",
)
@click.option(
    "--graph",
    default=_D.graph,
    show_default=True,
    metavar="|".join(GRAPHS),
    help="complete (SecAgg) or sparse (SecAgg+ Harary graph).",
)
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
@click.option(
    "--corrupt-fraction",
    type=float,
    default=_D.corrupt_fraction,
    show_default=True,
    help="Colluding clients the sparse graph's helper must tolerate.",
)
@click.option(
    "--frac-bits",
    type=int,
    default=_D.frac_bits,
    show_default=True,
    help="Fixed-point precision of the encoded updates.",
)
@click.option(
    "--signed/--unsigned",
    default=_D.signed,
    show_default=True,
    help="Ed25519-signed mode with the consistency round.",
)
@click.option(
    "--hidden",
    type=int,
    default=_D.hidden,
    show_default=True,
    help="Hidden units (0 = logistic regression).",
)
@click.option(
    "--skew",
    type=float,
    default=_D.skew,
    show_default=True,
    help="Dirichlet concentration of the label split (smaller = more skewed).",
)
@click.option(
    "--test-fraction",
    type=float,
    default=_D.test_fraction,
    show_default=True,
    help="Share of the data held out for testing (never seen by a client).",
)
@click.option(
    "--seed",
    type=int,
    default=_D.seed,
    show_default=True,
    help="Seed of the split, initialisation, sampling and noise.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=_D.out,
    show_default=True,
    help="Report folder (created; files in it are replaced).",
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
    clip_norm: float,
    update_clip: float,
    dropout_rate: float,
    graph: str,
    degree: int | None,
    threshold: int | None,
    corrupt_fraction: float,
    frac_bits: int,
    signed: bool,
    hidden: int,
    skew: float,
    test_fraction: float,
    seed: int,
    out: Path,
    quiet: bool,
) -> None:
    """Train across simulated hospitals with DP-SGD and secure aggregation; write a report.

    Every client trains with Opacus DP-SGD, every round is summed by the secure aggregation
    protocol, and by default one random client per round drops out at a random protocol
    stage. A baseline (same split and seed, no DP, no masking) runs alongside. The report
    folder gets report.md, report.json, ledger.json and PNG plots (see docs/demo.md).
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
        clip_norm=clip_norm,
        update_clip=update_clip,
        dropout_rate=dropout_rate,
        graph=graph,
        degree=degree,
        threshold=threshold,
        corrupt_fraction=corrupt_fraction,
        frac_bits=frac_bits,
        signed=signed,
        hidden=hidden,
        skew=skew,
        test_fraction=test_fraction,
        seed=seed,
        out=out,
    ).validate()
    _run(config, quiet=quiet)


def _run(config: DemoConfig, *, quiet: bool) -> None:
    import torch
    from rich.console import Console

    from secureagg.demo import choose_graph, run_demo, write_report
    from secureagg.demo._console import LiveProgress, summary_tables

    choose_graph(config)  # a bad graph setting fails before any work
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's convergence chatter
    torch.set_num_threads(1)  # tiny models: one thread is faster and bit-reproducible
    console = Console()
    start = time.perf_counter()
    with LiveProgress(console, enabled=not quiet) as progress:
        result = run_demo(config, progress)
    report = write_report(result, config.out)
    for table in summary_tables(report):
        console.print(table)
    console.print(
        f"report: {config.out / 'report.md'}  (ledger: {config.out / 'ledger.json'}; "
        f"{time.perf_counter() - start:.1f} s)"
    )
