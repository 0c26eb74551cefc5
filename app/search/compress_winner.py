"""A search's ``compression``, run on the version it registers. The winner's family decides
what can run: a chain that needs a network's weights (pruning, weight sharing) when trees
or a linear model won, or a graph rewrite of trees, is skipped and the result says why;
the rest run as a compress job's would."""

from __future__ import annotations

from app.compression.base import Candidate
from app.compression.job import Compression, compression_data, run_compression
from app.compression.record import Lineage
from app.compression.spec import CompressionSpec, chain_problems
from app.contracts.networks import CNNConfig
from app.contracts.results import SkippedChain
from app.jobs.runner import JobContext
from app.search.finalize import PreparedVersion, SearchSubject, untrainable_reason
from app.search.run import SearchRun
from app.training.ensemble import Fitted, width_of
from app.training.export import INPUT_NAME, OUTPUT_NAME
from app.training.families.registry import holds_graph_weights
from app.training.models import Network
from app.training.table_models import TableModel


def fitting_chains(
    spec: CompressionSpec, winner: Fitted
) -> tuple[CompressionSpec, list[SkippedChain]]:
    """The spec with only the chains that can run on ``winner``, and those left out."""
    network = winner if isinstance(winner, Network) else None
    problems = chain_problems(
        spec.methods,
        has_network=network is not None,
        convolutional=network is not None and isinstance(network.config, CNNConfig),
        parent="the winner",
        untrainable=untrainable_reason(winner),
        graph_weights=not isinstance(winner, TableModel) or holds_graph_weights(winner.family),
    )
    skipped = [
        SkippedChain(chain=[step.method for step in spec.methods[position]], reason=problem)
        for position, problem in problems.items()
    ]
    kept = [chain for position, chain in enumerate(spec.methods) if position not in problems]
    return spec.model_copy(update={"methods": kept}), skipped


def compress_winner(
    context: JobContext,
    run: SearchRun,
    subject: SearchSubject,
    spec: CompressionSpec,
    network: Fitted,
    winner: PreparedVersion,
) -> Compression:
    """Variants of the registered winner (the chains that fit its family), measured on the
    search's own split, waiting to be registered with it."""
    runnable, skipped = fitting_chains(spec, network)
    parent = Candidate(
        onnx=winner.network_onnx,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        n_features=width_of(network)[0],
        params=winner.draft.n_params,
        network=network if isinstance(network, Network) else None,
    )
    data = compression_data(
        run.arrays,
        run.splits,
        run.dataset,
        run.store,
        seed=run.spec.seed,
        threads=context.settings.ort_threads,
        max_accuracy_drop=spec.max_accuracy_drop,
    )
    lineage = Lineage(
        model_name=subject.model_name,
        task=run.dataset.task,
        signature=winner.draft.signature,
        class_labels=run.dataset.class_labels,
        dataset_id=run.dataset.id,
        job_id=context.job_id,
        split_seed=subject.split_seed,
    )
    compression = run_compression(
        context, parent, data, runnable, lineage, run.store, parent_metrics=winner.draft.metrics
    )
    compression.skipped = skipped
    return compression
