"""Training on a Dask cluster, for tenants too large for one process (issue 15 item 3).

Which engine trains a tenant is decided here (``engine_for``): a run goes to the Dask cluster at
``Settings.dask_scheduler`` (``OFFERWISE_DASK_SCHEDULER``, ``offerwise train
--dask-scheduler``) when the tenant's current CRM version holds at least
``Settings.dask_min_rows`` customers (``OFFERWISE_DASK_MIN_ROWS``); otherwise, or without a
scheduler, in this process. Both engines give the same ``TrainingResult`` (results.json,
metrics, score cuts, lineage) and register in the same registry: only two steps change.

- **The archive** is read by the cluster in partitions: ``dask.dataframe.read_parquet`` over the
  tenant's live archive files (the same files ``read_archive`` reads, redundant ones left out),
  through the artifact store's file system: the data dir, or the bucket of
  ``OFFERWISE_STORAGE_URL`` (the workers read S3 themselves, with their own AWS credentials).
  Each file is one partition, its columns conformed to the current schema on the worker; the
  rows come back in archive order and are deduplicated by (visitor, id) exactly like
  ``read_archive``, because the web features are built by the one ``FeatureBuilder`` shared
  with serving, in the client.
- **XGBoost** trains through its Dask interface (``xgboost.dask``): the training and validation
  rows are split into one chunk per worker, each worker builds its ``DaskQuantileDMatrix`` part,
  and the workers grow each tree together (Rabit allreduce of the histograms); early stopping
  watches the same weighted validation log loss as ``fit.fit_xgboost``. The booster that comes
  back is an ordinary one: calibration, the baselines, the choice and the real-time scorer are
  the single-process code.

What stays in the client: the CRM extract (one Parquet file per version), the feature matrix
(float32, customers x features) and the baselines. A tenant whose feature matrix does not fit
one machine's memory needs the features built per partition too; that is not done here.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from clickstream.archive_files import dedupe_events, live_file_keys
from clickstream.event_table import conform
from enrichment.crm.serving import current_version
from enrichment.crm.versions import CUSTOMERS, artifact_prefix
from models.training.fit import _xgb_params
from models.training.params import TrainingError, TrainParams
from models.web_history import EVENT_COLUMNS, events_frame
from store.artifacts import ArtifactStore, artifacts_for, join_key
from store.config import Settings

log = logging.getLogger(__name__)

# Columns the partitioned read brings back: the web history's, and what dedupe keys on.
READ_COLUMNS = [*EVENT_COLUMNS, "id"]


def tenant_rows(r: redis.Redis, settings: Settings, tenant: str) -> int:
    """Customers in the tenant's current CRM version (0 without one): the size that decides
    the engine. Read from the Parquet footer, not the rows."""
    version = current_version(r, tenant)
    if version is None:
        return 0
    key = join_key(artifact_prefix(tenant), version, CUSTOMERS)
    try:
        with artifacts_for(settings).open(key) as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)
    except OSError:
        return 0


def engine_for(r: redis.Redis, settings: Settings, tenant: str) -> str:
    """``"dask"`` when a scheduler is configured and the tenant is large enough, else
    ``"local"``."""
    if not settings.dask_scheduler:
        return "local"
    rows = tenant_rows(r, settings, tenant)
    return "dask" if rows >= settings.dask_min_rows else "local"


@dataclass
class DaskEngine:
    """The two steps a Dask run does on the cluster; see the module docstring."""

    client: Any  # distributed.Client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def describe(self) -> dict:
        return {"engine": "dask", "dask_workers": self.workers}

    # -- the archive, in partitions ----------------------------------------------------------
    def load_events(self, store: ArtifactStore, tenant: str) -> pd.DataFrame:
        """The tenant's archived events, as ``web_history.load_events`` gives them."""
        table = self.read_archive(store, tenant)
        return events_frame(table)

    def read_archive(self, store: ArtifactStore, tenant: str) -> pa.Table:
        import dask.dataframe as dd

        keys = live_file_keys(store, tenant)
        if not keys:
            return conform(pa.table({}), READ_COLUMNS).select(list(EVENT_COLUMNS))
        fs, _ = store.dataset_location("")
        paths = [store.dataset_location(k)[1] for k in keys]
        frame = dd.read_parquet(
            paths,
            filesystem=fs,
            dtype_backend="pyarrow",
        )
        frame = frame.map_partitions(_conform_partition, meta=_conform_partition(frame._meta))
        table = pa.Table.from_pandas(frame.compute(), preserve_index=False)
        table = dedupe_events(conform(table, READ_COLUMNS))
        return table.select(list(EVENT_COLUMNS))

    # -- XGBoost on the cluster ----------------------------------------------------------------
    def fit_xgboost(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        feature_names: Sequence[str],
        params: TrainParams,
    ):
        """``fit.fit_xgboost`` on the cluster: the same parameters, early stopping and slicing."""
        import dask.array as da
        from xgboost import dask as dxgb

        pos = int(y_train.sum())
        p = _xgb_params(params, pos, int(y_train.size - pos))
        p.pop("nthread", None)  # each worker uses its own threads
        n = self.workers
        names = list(feature_names)

        def chunked(a: np.ndarray) -> Any:
            rows = max(1, math.ceil(a.shape[0] / n))
            return da.from_array(a, chunks=(rows, *a.shape[1:]))

        weight = np.where(np.asarray(y_val, dtype=bool), p["scale_pos_weight"], 1.0)
        dtrain = dxgb.DaskQuantileDMatrix(
            self.client,
            chunked(X_train),
            label=chunked(np.asarray(y_train, dtype=np.float32)),
            feature_names=names,
            max_bin=params.max_bin,
        )
        dval = dxgb.DaskQuantileDMatrix(
            self.client,
            chunked(X_val),
            label=chunked(np.asarray(y_val, dtype=np.float32)),
            weight=chunked(weight.astype(np.float32)),
            ref=dtrain,
            feature_names=names,
            max_bin=params.max_bin,
        )
        out = dxgb.train(
            self.client,
            p,
            dtrain,
            num_boost_round=params.max_rounds,
            evals=[(dval, "validation")],
            early_stopping_rounds=params.early_stopping,
            verbose_eval=False,
        )
        booster = out["booster"]
        best = int(getattr(booster, "best_iteration", params.max_rounds - 1))
        booster = booster[: best + 1]
        booster.feature_names = names
        info = {"trees": best + 1, "scale_pos_weight": round(p["scale_pos_weight"], 3)}
        return booster, {**info, "dask_workers": n}


def _conform_partition(part: pd.DataFrame) -> pd.DataFrame:
    """One archive file's rows with the read columns in the current schema's types."""
    table = pa.Table.from_pandas(part, preserve_index=False)
    return conform(table, READ_COLUMNS).to_pandas(types_mapper=pd.ArrowDtype)


@contextlib.contextmanager
def dask_engine(scheduler: str) -> Iterator[DaskEngine]:
    """A client of the cluster at ``scheduler`` (``tcp://host:port``) for one run."""
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - the extra is part of `make`
        raise RuntimeError(
            "distributed training needs Dask: pip install 'offerwise[distributed]'"
        ) from err
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as err:
        raise TrainingError(
            f"cannot reach the Dask scheduler at {scheduler} ({err}); start the cluster, or "
            "unset OFFERWISE_DASK_SCHEDULER / --dask-scheduler to train in this process"
        ) from None
    with client:
        yield DaskEngine(client)
