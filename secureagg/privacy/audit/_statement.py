"""A plain statement of the guarantee, item by item, after the reporting checklist of
Ponomareva et al., "How to DP-fy ML" (JAIR 2023): DP setting, the instantiated definition
(data accesses covered, the released outputs, unit of privacy, adjacency), and the accounting
(type, assumptions, formal statement, transparency).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from secureagg._version import __version__
from secureagg.privacy.accounting import ACCOUNTANT_NAMES, REPLACE_ONE
from secureagg.privacy.audit._audit_result import ClientAudit, LedgerAudit

__all__ = ["client_statement", "common_statement"]

_NAMES = ACCOUNTANT_NAMES


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover - both are dependencies
        return "not installed"


def _fmt(x: float) -> str:
    return "infinite (no noise)" if x == float("inf") else f"{x:.3f}"


def common_statement(audit: LedgerAudit) -> list[tuple[str, str]]:
    """Checklist items that hold for every client in the ledger."""
    names = ", ".join(_NAMES[a] for a in audit.accountants)
    return [
        (
            "DP setting",
            "Each client runs DP-SGD (Opacus, through secureagg's PrivateTrainer) on its own "
            "data before its update leaves the device; the guarantee holds against anyone who "
            "sees what the client sends, including the server and other clients, whether or "
            "not secure aggregation holds. It assumes the client's weight in the average does "
            "not depend on its data (uniform weighting, the default) or is a count released "
            "with Gaussian noise that the ledger charges (records with count_noise). A true "
            "example count sent as the weight (weighting 'examples-public') is covered only "
            "by the replace-one guarantee of the clients whose records say relation "
            "'replace-one' (the count is then public); a Flower node sends one only if its "
            "own node config opts in.",
        ),
        (
            "Unit of privacy and adjacency",
            "One example (one row) of one client's local dataset; datasets are adjacent when "
            "they differ by adding or removing one example (the relation Poisson-sampled "
            "DP-SGD is analysed under), except for clients whose ledger records say relation "
            "'replace-one': for them datasets are adjacent when they have the same size and "
            "differ in one example (a replaced example moves the clipped sum by up to twice "
            "the clipping norm), accounted by dp-accounting PLD alone, the only accountant "
            "here that analyses it. A person with several examples, or a client's "
            "dataset as a whole, is not protected at the stated epsilon (no user- or "
            "client-level guarantee is claimed).",
        ),
        (
            "Data accesses covered",
            "Every DP-SGD step recorded in the ledger for that client, in every round it took "
            "part in, including rounds where it trained and then dropped out. Not covered: "
            "hyper-parameter tuning, preprocessing, evaluation on private data, or any round "
            "missing from the ledger.",
        ),
        (
            "Released outputs",
            "All of the client's model updates, round after round, and its constant weight "
            "(so every intermediate model, and the final one, is covered by "
            "post-processing).",
        ),
        (
            "Accounting",
            f"Composition over all recorded steps of the Poisson-subsampled Gaussian mechanism "
            f"(sample rate q, noise multiplier sigma relative to the clipping norm), computed "
            f"independently by {names}. RDP figures are upper bounds that are looser; PRV and "
            f"PLD are numerically tight upper bounds. The reported epsilon is "
            f"{_NAMES[audit.reference]} (the trainer calibrates noise and enforces budgets "
            f"with dp-accounting PLD; the others are cross-checks).",
        ),
        (
            "Accounting assumptions",
            "Each example is included in each step's batch independently with probability q "
            "(Poisson sampling, as Opacus's DPDataLoader does). If batches were shuffled or "
            "of fixed size instead, these figures do not apply. Per-example gradients are "
            "clipped to max_grad_norm and Gaussian noise of standard deviation "
            "sigma * max_grad_norm is added to their sum at every step, drawn from generators "
            "seeded from the operating system every round (no user seed reaches them). The "
            "figures are for exact Gaussian noise: floating-point sampling attacks (Mironov "
            "2012) are outside them. The sample rate and step count are fixed from the "
            "dataset's size when the trainer is built and treated as public.",
        ),
        (
            "What secure aggregation adds",
            "The server sees only the sum of the updates of a round's surviving clients, never "
            "one client's update (against an honest-but-curious server colluding with fewer "
            "than the threshold of clients). This is a separate, cryptographic protection: "
            "the epsilon above does not count on it and claims no amplification from it.",
        ),
        (
            "Transparency",
            f"secureagg {__version__}, opacus {_version('opacus')}, dp-accounting "
            f"{_version('dp-accounting')}; rerun `secureagg audit LEDGER.json` to reproduce "
            "every figure from the ledger.",
        ),
    ]


def client_statement(audit: LedgerAudit, client: ClientAudit) -> str:
    """The formal (epsilon, delta) statement for one client, in one paragraph."""
    others = ", ".join(
        f"{_NAMES[a]} {_fmt(v)}" for a, v in client.final.items() if a != audit.reference
    )
    budget = (
        "no budget was set"
        if client.budget_epsilon is None
        else f"its budget is epsilon {client.budget_epsilon:g} ({client.status})"
    )
    if client.status == "NOT PRIVATE":
        return (
            f"Client {client.client_id}'s training is NOT PRIVATE: {client.notes[0]}. Its "
            f"figures ({_fmt(client.spent)} by {_NAMES[audit.reference]}) do not hold."
        )
    if client.relation == REPLACE_ONE:
        relation = (
            "replacing one example of its data (replace-one: its example count was "
            "declared public and sent)"
        )
        others = "Opacus RDP, Opacus PRV and dp-accounting RDP are not applicable under replace-one"
    else:
        relation = "adding or removing one example of its data"
        others = f"the other accountants give {others}"
    return (
        f"Client {client.client_id}'s training is ({_fmt(client.spent)}, {client.delta:g})-DP "
        f"({_NAMES[audit.reference]}) with respect to {relation}, composed over "
        f"{client.total_steps} DP-SGD steps taken in "
        f"{client.trained_rounds} of {len(client.rounds)} recorded rounds "
        f"({client.participated_rounds} with its update in the sum) "
        f"(sample rates {client.sample_rates}, noise multipliers {client.noise_multipliers}, "
        f"clipping norms {client.max_grad_norms}); {others}; "
        f"{budget}."
    )
