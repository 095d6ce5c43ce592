"""Train the reference detector with weighted losses; checkpoints every epoch and on interrupt.

``boxweight train --train DIR --val DIR --out RUN_DIR`` reads the ``train``
split of a ``boxweight prepare`` output for training and its ``val`` split for
the final evaluation (``--train-split``/``--val-split`` pick others; globs of
shards inside an output folder work too). The run folder holds ``checkpoints/`` (``--resume`` continues from the latest,
optimizer state and step included), ``history.json`` (per-epoch losses),
``config.json`` and the final ``model.keras``. Runs on the GPU when
TensorFlow sees one (``MirroredStrategy`` for several), else on the CPU.
Training goes through ``keras.Model.fit`` with our own ``train_step``:
Keras 3 optimizers with slot variables fail inside a hand-written
``strategy.run`` loop (as in keras-team/keras#19246), but not inside ``fit``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from boxweight.detector import PRIOR, assign_targets, build_detector, decode_boxes
from boxweight.train_args import NORMALIZERS, WEIGHTS_ON, parser
from schemas.label_map import LabelMap
from storage.job_output import JobOutput, one_output
from storage.terminal import Progress, eta
from weighting.schemes import DEFAULT_NORMALIZE, SCHEMES, tail_classes
from weighting.training.input_fn import ReweightSpec, create_input_fn, split_counts
from weighting.training.losses import (
    WeightedBinaryCrossEntropy,
    WeightedGIoU,
    WeightedSigmoidFocalLoss,
    equalization_weights,
    normalize_by_positives,
    seesaw_weights,
)


@dataclasses.dataclass
class TrainConfig:
    train: str
    out: str
    val: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    loss: str = "focal"
    weights: str = "record"
    normalize: str = DEFAULT_NORMALIZE
    max_weight: float | None = None
    normalizer: str = "weight"
    weights_on: str = "both"
    prior: str = "uniform"
    seesaw: bool = False
    eql_threshold: float | None = None
    repeat_factor_sampling: bool = False
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 128
    width: int = 32
    learning_rate: float = 2e-3
    mixed_precision: bool = False
    seed: int = 0
    resume: bool = False
    steps_per_epoch: int | None = None


def _weights_arg(cfg: TrainConfig, job_dir: str) -> Any:
    if cfg.weights in ("record", "none"):
        return cfg.weights
    if cfg.weights not in SCHEMES:
        raise SystemExit(f"boxweight train: error: --weights {cfg.weights!r}: use record, none or a scheme ({', '.join(SCHEMES)})")
    return ReweightSpec(job_dir, cfg.weights, normalize=cfg.normalize, max_weight=cfg.max_weight)


def _per_class_id(label_map: LabelMap, value: Callable[[str], float]) -> list[float]:
    """``value`` of each class name, per class id 1..max_id (an id without a class gets ``value("")``)."""
    names = dict(label_map)
    return [value(names.get(i, "")) for i in range(1, label_map.max_id + 1)]


def _priors(cfg: TrainConfig, data: JobOutput, label_map: LabelMap) -> list[float] | None:
    """Per class id, the classification head's initial probability; None for the single ``PRIOR``.

    ``class_frequency`` (logit adjustment at initialization, after Menon et al., ICLR 2021): each class
    starts at ``PRIOR`` scaled by its share of the train boxes times the class count, so the mean over
    classes stays ``PRIOR`` and a frequent class starts more likely than a rare one.
    """
    if cfg.prior == "uniform":
        return None
    boxes = split_counts(data, "train").boxes
    scale = PRIOR * len(dict(label_map)) / max(sum(boxes.values()), 1)
    return _per_class_id(label_map, lambda name: min(max(scale * boxes.get(name, 0), 1e-4), 0.5))


def _counts(cfg: TrainConfig, data: JobOutput, label_map: LabelMap) -> list[float] | None:
    """Per class id, the train boxes (for the Seesaw-style term); None when it is off."""
    if not cfg.seesaw:
        return None
    boxes = split_counts(data, "train").boxes
    return _per_class_id(label_map, lambda name: float(boxes.get(name, 0)))


def _tail(cfg: TrainConfig, data: JobOutput, label_map: LabelMap) -> list[float] | None:
    """Per class id, 1.0 for the equalization loss's tail classes; None when it is off."""
    if cfg.eql_threshold is None:
        return None
    tail = tail_classes(split_counts(data, "train"), cfg.eql_threshold)
    return _per_class_id(label_map, lambda name: 1.0 if tail.get(name, False) else 0.0)


class _Trainer(keras.Model):
    """Wraps the detector so ``fit`` runs our weighted loss (and any tf.distribute strategy).

    A positive cell's classification loss is scaled by its box's weight (and its
    box-regression loss too, unless ``weights_on="classification"``);
    background cells weigh 1. Both summed losses are divided by the
    ``normalizer`` of the positive cells (see ``NORMALIZERS``).
    """

    def __init__(self, detector: keras.Model, num_classes: int, size: int, loss: str, tail: list[float] | None = None,
                 normalizer: str = "weight", weights_on: str = "both", seesaw_counts: list[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if normalizer not in NORMALIZERS or weights_on not in WEIGHTS_ON:
            raise ValueError(f"normalizer {normalizer!r} not in {NORMALIZERS} or weights_on {weights_on!r} not in {WEIGHTS_ON}")
        self.detector, self.num_classes, self.size = detector, num_classes, size
        self.normalizer, self.weights_on = normalizer, weights_on
        self.tail = None if tail is None else tf.constant(tail, tf.float32)
        self.seesaw_counts = None if seesaw_counts is None else tf.constant(seesaw_counts, tf.float32)
        self.cls_loss_fn = (WeightedSigmoidFocalLoss if loss == "focal" else WeightedBinaryCrossEntropy)(reduction="sum")
        self.box_loss_fn = WeightedGIoU(reduction="sum")
        self.cls_tracker = keras.metrics.Mean(name="cls_loss")
        self.box_tracker = keras.metrics.Mean(name="box_loss")

    def call(self, images: Any, training: bool = False) -> Any:
        return self.detector(images, training=training)

    @property
    def metrics(self) -> list[Any]:
        return [self.cls_tracker, self.box_tracker]

    def losses_of(self, t: dict[str, Any], out: dict[str, Any]) -> tuple[Any, Any]:
        """The normalized classification and box losses of one batch's targets ``t`` and outputs ``out``."""
        positive = tf.cast(t["positive"], tf.float32)
        cls_weights = t["class_weights"][..., None]  # [B, N, 1]: one weight per cell, over every class
        if self.tail is not None:  # [B, N, C]: foreground cells send no negative gradient to tail classes
            cls_weights = cls_weights * equalization_weights(t["class_targets"], t["positive"], self.tail)
        if self.seesaw_counts is not None:  # [B, N, C]: negative terms on foreground cells rebalanced by class counts
            cls_weights = cls_weights * seesaw_weights(t["class_targets"], t["positive"], out["class_logits"], self.seesaw_counts)
        box_weights = t["box_weights"] if self.weights_on == "both" else positive
        divisor = positive if self.normalizer == "positives" else t["box_weights"]
        cls_loss = normalize_by_positives(self.cls_loss_fn(t["class_targets"], out["class_logits"], sample_weight=cls_weights), divisor)
        box_sum = self.box_loss_fn(t["box_targets"], decode_boxes(out["box_raw"], self.size), sample_weight=box_weights)
        box_loss = normalize_by_positives(box_sum, positive if self.weights_on == "classification" else divisor)
        return cls_loss, box_loss

    def train_step(self, data: Any) -> dict[str, Any]:
        images, labels = data
        t = assign_targets(labels["groundtruth_boxes"], labels["groundtruth_classes"], labels["groundtruth_weights"], self.num_classes, self.size)
        with tf.GradientTape() as tape:
            out = self.detector(images, training=True)
            cls_loss, box_loss = self.losses_of(t, out)
            scaled = self.optimizer.scale_loss(cls_loss + box_loss)
        variables = self.detector.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync  # the trackers show the whole batch's losses
        self.cls_tracker.update_state(cls_loss * replicas)
        self.box_tracker.update_state(box_loss * replicas)
        return {m.name: m.result() for m in self.metrics}


class _StepProgress(keras.callbacks.Callback):
    """Epoch, step, losses, steps/s and the epoch's ETA on one terminal line after every step.

    Added only when stderr is a terminal: a callback with a batch hook makes Keras
    turn every step's logs into Python numbers. ``async_safe`` lets Keras do that
    off the training thread.
    """

    async_safe = True

    def __init__(self, steps: int, epochs: int) -> None:
        super().__init__()
        self.steps, self.epochs, self.line = steps, epochs, Progress()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch
        self.line.restart()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        logs, done = logs or {}, batch + 1
        rate = self.line.rate(done)
        losses = "  ".join(f"{k.split('_')[0]} {float(logs[k]):.4f}" for k in ("cls_loss", "box_loss") if k in logs)
        self.line.show(
            f"epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps}  {losses}  {rate:.1f} steps/s  ETA {eta((self.steps - done) / rate)}"
        )

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.line.clear()  # the epoch's own line follows

    def on_train_end(self, logs: Any = None) -> None:
        self.line.clear()


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint and the history after each epoch; on Ctrl-C, stops after the step that runs.

    The first Ctrl-C only asks Keras to stop (``stop_training``, checked after
    every batch), so the interrupt never lands inside TensorFlow; the caller
    then saves mid-epoch. A second Ctrl-C interrupts at once. No batch hook:
    one would make Keras wait for every step's losses (no async dispatch).
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable, optimizer: Any, history: list, path: str, epochs: int) -> None:
        super().__init__()
        self.manager, self.epoch, self.optimizer, self.history, self.path, self.epochs = manager, epoch, optimizer, history, path, epochs
        self.interrupted = False

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self._stop()

    def _stop(self) -> None:
        if self.interrupted and getattr(self, "_model", None) is not None:
            self.model.stop_training = True

    def on_train_begin(self, logs: Any = None) -> None:
        self._stop()  # an interrupt before fit began: fit has just cleared stop_training

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._stop()
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.interrupted:  # a cut epoch is not a finished one: it is saved, and run again on --resume
            return
        self.epoch.assign(epoch + 1)
        logs = logs or {}
        record = {
            "epoch": epoch + 1, "step": int(self.optimizer.iterations.numpy()),
            "cls_loss": float(logs["cls_loss"]), "box_loss": float(logs["box_loss"]), "seconds": time.perf_counter() - self.start,
        }
        self.history.append(record)
        self.manager.save(checkpoint_number=epoch + 1)
        with open(self.path, "w") as f:
            json.dump(self.history, f, indent=2)
        print(f"epoch {record['epoch']}/{self.epochs}  cls {record['cls_loss']:.4f}  box {record['box_loss']:.4f}  {record['seconds']:.1f}s", flush=True)


def train(cfg: TrainConfig) -> list[dict[str, float]]:
    """Train (or resume) a run; returns the per-epoch history."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    shards, data = one_output(cfg.train, cfg.train_split, "train")
    if cfg.val:  # checked before the first step: a --val found wrong after training cost the whole run
        _, val_data = one_output(cfg.val, cfg.val_split, "val")
        val_data.check_classes(data.label_map, f"--train {cfg.train}")
    labels = data.labels()
    names = list(labels.names)
    config_path = os.path.join(cfg.out, "config.json")
    if cfg.resume and os.path.exists(config_path):
        with open(config_path) as f:
            data.check_classes([tuple(e) for e in json.load(f)["label_map"]], f"run {cfg.out}")
    num_classes, size = labels.max_id, cfg.image_size  # ids may have gaps (a TF OD API label map)
    steps = cfg.steps_per_epoch or max(1, data.records_in(shards.files) // cfg.batch_size)
    dataset = create_input_fn(
        shards.files, cfg.batch_size, True, image_size=(size, size), max_boxes=50,
        weights=_weights_arg(cfg, data.directory), repeat_factor_sampling=cfg.repeat_factor_sampling, seed=cfg.seed,
    )()
    with strategy.scope():
        model = build_detector(num_classes, size, cfg.width, _priors(cfg, data, labels))
        optimizer = keras.optimizers.Adam(cfg.learning_rate)
        if cfg.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainer = _Trainer(model, num_classes, size, cfg.loss, _tail(cfg, data, labels), cfg.normalizer, cfg.weights_on,
                           _counts(cfg, data, labels), name="detector_trainer")
        trainer.compile(optimizer=optimizer)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    os.makedirs(cfg.out, exist_ok=True)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(cfg.out, "checkpoints"), max_to_keep=3)
    history_path = os.path.join(cfg.out, "history.json")
    history: list[dict[str, float]] = []
    if cfg.resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        if os.path.exists(history_path):
            with open(history_path) as f:
                history = json.load(f)
        print(f"resumed from {manager.latest_checkpoint} at epoch {int(epoch.numpy())}")
    with open(config_path, "w") as f:
        label_map = [list(e) for e in data.label_map]
        trained_on = {"output": data.directory, "shards": [os.path.basename(f) for f in shards.files]}
        json.dump({**dataclasses.asdict(cfg), "class_names": names, "label_map": label_map, "num_classes": num_classes, "data": trained_on}, f, indent=2)
    callback = _EpochCheckpoint(manager, epoch, optimizer, history, history_path, cfg.epochs)
    progress = [_StepProgress(steps, cfg.epochs)] if sys.stderr.isatty() else []
    on_main = threading.current_thread() is threading.main_thread()
    previous_sigint = signal.signal(signal.SIGINT, callback.on_sigint) if on_main else None
    try:
        if int(epoch.numpy()) < cfg.epochs:
            trainer.fit(dataset, epochs=cfg.epochs, initial_epoch=int(epoch.numpy()), steps_per_epoch=steps, callbacks=[*progress, callback], verbose=0, shuffle=False)
    except KeyboardInterrupt:
        callback.interrupted = True
    finally:
        if previous_sigint is not None:
            signal.signal(signal.SIGINT, previous_sigint)
    if callback.interrupted:
        path = manager.save(checkpoint_number=int(epoch.numpy()))
        raise KeyboardInterrupt(f"saved {path} at step {int(optimizer.iterations.numpy())}; continue with --resume")
    model.save(os.path.join(cfg.out, "model.keras"))
    return history


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items()})
    train(cfg)
    if cfg.val:
        from boxweight.evaluate import render, run_model

        print(render(run_model(cfg.out, cfg.val, cfg.val_split)))
    return 0
