"""The Prometheus metrics of one API app, in a ``CollectorRegistry`` of its own.

Not the process-global registry: each ``create_app`` gets a fresh registry, so tests (and a
process serving two apps) never collide on metric names.

Two kinds of metric:

- **Observed as they happen**: CE call latency (``ce_bridge_ce_call_seconds{op}``, a histogram
  over each whole call, retries included) and CE errors by kind
  (``ce_bridge_ce_errors_total{op,kind}``), fed by a ``CEClient`` observer.
- **Computed at scrape** by :class:`~bridge.api.services.MetricsSampler` (so they are right
  after a restart and shared by every worker on one database): jobs by bridge state, the
  ``chain_tx`` table (pending, confirmed, failed, fee-bump replacements, gas used), the update
  outbox, chain head, scan cursor and lag, operator balance, ``CallbackFailed`` events and
  whether dispatch is paused (stored in the database). A source that is down leaves its
  metrics out of that scrape.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.api.services import MetricsSampler
from bridge.errors import DownloadRefused, RemoteAuthError, RemoteError, RemoteRejected

#: Seconds: a CE call takes milliseconds to seconds, longer with retries and backoff.
CE_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def error_kind(error: RemoteError) -> str:
    """A short label for a CE error: ``auth``, ``rejected``, ``download_refused``, ``transient``."""
    if isinstance(error, RemoteAuthError):
        return "auth"
    if isinstance(error, RemoteRejected):
        return "rejected"
    if isinstance(error, DownloadRefused):
        return "download_refused"
    return "transient"


class ApiMetrics:
    """The app's registry and its metrics.

    Args:
        sampler: computes the scrape-time values.
    """

    def __init__(self, sampler: MetricsSampler) -> None:
        self.registry = CollectorRegistry()
        self.ce_call_seconds = Histogram(
            "ce_bridge_ce_call_seconds",
            "Duration of CE API calls, retries included",
            ["op"],
            buckets=CE_CALL_BUCKETS,
            registry=self.registry,
        )
        self.ce_errors = Counter(
            "ce_bridge_ce_errors",
            "CE API calls that failed, by kind (auth, rejected, download_refused, transient)",
            ["op", "kind"],
            registry=self.registry,
        )
        self.registry.register(_ScrapeCollector(sampler))

    def observe_ce_call(self, op: str, seconds: float, error: RemoteError | None) -> None:
        """A ``CEClient`` observer (see ``bridge.remote.client.CallObserver``)."""
        self.ce_call_seconds.labels(op=op).observe(seconds)
        if error is not None:
            self.ce_errors.labels(op=op, kind=error_kind(error)).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _ScrapeCollector(Collector):
    """Turns one :class:`MetricsSnapshot` per scrape into metric families."""

    def __init__(self, sampler: MetricsSampler) -> None:
        self._sampler = sampler

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape; nothing to sample at registration

    def collect(self) -> Iterable[Metric]:
        s = self._sampler.sample()
        jobs = GaugeMetricFamily(
            "ce_bridge_jobs", "Jobs by the bridge's state of them", labels=["state"]
        )
        for state, n in sorted(s.jobs_by_state.items()):
            jobs.add_metric([state], n)
        yield jobs
        txs = GaugeMetricFamily(
            "ce_bridge_transactions", "Operator transactions by state", labels=["state"]
        )
        for state, n in sorted(s.txs_by_state.items()):
            txs.add_metric([state], n)
        yield txs
        yield GaugeMetricFamily(
            "ce_bridge_transactions_pending",
            "Transactions broadcast and not yet confirmed",
            value=s.txs_by_state.get("unconfirmed", 0),
        )
        yield CounterMetricFamily(
            "ce_bridge_transactions_failed",
            "Transactions that ended fatal_error (reverted, or their nonce was taken)",
            value=s.txs_by_state.get("fatal_error", 0),
        )
        yield CounterMetricFamily(
            "ce_bridge_transactions_replaced",
            "Fee-bumped replacements of stuck transactions",
            value=s.tx_replacements,
        )
        yield CounterMetricFamily(
            "ce_bridge_gas_used", "Gas used by the operator's mined transactions", value=s.gas_used
        )
        yield CounterMetricFamily(
            "ce_bridge_fees_paid_wei",
            "What the operator's mined transactions cost, wei: gas used at the effective price "
            "plus the L1 data fee (OP-stack chains)",
            value=s.fees_paid_wei,
        )
        yield CounterMetricFamily(
            "ce_bridge_data_fees_paid_wei",
            "L1 data fees of the operator's mined transactions, wei (OP-stack chains; else 0)",
            value=s.l1_fees_paid_wei,
        )
        if s.rpc_endpoints:
            up = GaugeMetricFamily(
                "ce_bridge_rpc_endpoint_up",
                "1 while an RPC endpoint is in use (not failing, not lagging), by redacted URL",
                labels=["endpoint"],
            )
            for shown, usable in s.rpc_endpoints:
                up.add_metric([shown], int(usable))
            yield up
        yield GaugeMetricFamily(
            "ce_bridge_updates_waiting",
            "On-chain updates queued and not yet in a transaction",
            value=s.updates_waiting,
        )
        yield CounterMetricFamily(
            "ce_bridge_updates_skipped",
            "Updates the contract skipped (UpdateSkipped)",
            value=s.updates_skipped,
        )
        optional: list[tuple[str, str, int | bool | None, bool]] = [
            ("ce_bridge_dispatch_paused", "1 while dispatch of new jobs is paused",
             s.dispatch_paused, False),
            ("ce_bridge_writer_active",
             "1 while this process sends its operator key's transactions; 0 while it stands by "
             "(another process with the same key holds the key's writer)",
             s.writer_active, False),
            ("ce_bridge_chain_head_block", "Latest block number of the node", s.head, False),
            ("ce_bridge_scan_cursor_block", "Last block the scanner processed",
             s.scan_cursor, False),
            ("ce_bridge_scan_lag_blocks",
             "Blocks between the scanner and the last block it may read (confirmations or tag)",
             s.scan_lag, False),
            ("ce_bridge_finality_lag_blocks",
             "Blocks between the head and the last block the scanner may read", s.finality_lag,
             False),
            ("ce_bridge_finalized_lag_blocks",
             "Blocks between the head and the node's finalized block", s.finalized_lag, False),
            ("ce_bridge_operator_balance_wei", "Balance of the operator account, wei",
             s.operator_balance_wei, False),
            ("ce_bridge_callback_failures", "CallbackFailed events of the escrow",
             s.callback_failures, True),
        ]  # fmt: skip
        for name, documentation, value, is_counter in optional:
            if value is None:
                continue
            if is_counter:
                yield CounterMetricFamily(name, documentation, value=int(value))
            else:
                yield GaugeMetricFamily(name, documentation, value=int(value))
