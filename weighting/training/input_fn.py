"""``create_input_fn``: weighted detection records -> batched ``tf.data`` for training.

Each element is ``(images, labels)``:

* ``images``: float32 ``[B, H, W, 3]``, pixel values in [0, 255] (as the TF
  OD API feeds its models; normalize in the model), resized keeping the
  aspect ratio and padded at the bottom and right;
* ``labels["groundtruth_boxes"]``: float32 ``[B, max_boxes, 4]``, ymin, xmin,
  ymax, xmax normalized to the padded image;
* ``labels["groundtruth_classes"]``: int32 ``[B, max_boxes]``, label-map ids
  **from 1** (0 is padding; :func:`one_hot_classes` turns them into
  ``[B, max_boxes, num_classes]``);
* ``labels["groundtruth_weights"]``: float32 ``[B, max_boxes]``, 0 on padding;
* ``labels["num_groundtruth_boxes"]``: int32 ``[B]``.

Weights come from ``image/object/class/weight``, else ``image/object/weight``,
else ones, so records made by other tools work; or they are recomputed in the
graph from the job's ``stats.json`` with a :class:`ReweightSpec`.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import tensorflow as tf

from schemas.features import parse_spec
from storage.job_output import DataError, JobOutput, resolve
from weighting.schemes import DEFAULT_NORMALIZE, BoxMultipliers, ClassCounts, class_weights

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
_PARSE_GROUP = 64  # records parsed together


def split_counts(output: JobOutput, split: str = "train") -> ClassCounts:
    """The counts the weighting schemes read, for one split of a job's ``stats.json``."""
    doc = output.stats()
    if split not in doc["splits"]:
        raise DataError(f"{output.directory}: no split {split!r} in stats.json; splits: {', '.join(doc['splits'])}")
    entry = doc["splits"][split]
    classes = entry["classes"]
    return ClassCounts(
        boxes={c["name"]: c["boxes"] for c in classes},
        images_with={c["name"]: c["images"] for c in classes},
        num_images=entry["images"],
        boxes_in_images_with={c["name"]: c.get("boxes_in_images", 0) for c in classes},
    )


@dataclasses.dataclass(frozen=True)
class ReweightSpec:
    """Recompute box weights at read time from a job's ``stats.json``.

    The records read must have the class set of that job (names and ids);
    ``create_input_fn`` refuses others when their output folder says so.

    Args:
        stats: the job's output folder (or its ``stats.json``).
        scheme: a weighting scheme name (see ``weighting.schemes.SCHEMES``).
        normalize, max_weight, params: as for ``weighting.class_weights``.
        multipliers: per-box factors for difficult, crowd and truncated boxes.
        split: the split whose counts define the weights (train, as the job does).
    """

    stats: str
    scheme: str
    normalize: str = DEFAULT_NORMALIZE
    max_weight: float | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    multipliers: BoxMultipliers = BoxMultipliers()
    split: str = "train"

    def output(self) -> JobOutput:
        """The job output whose statistics define the weights."""
        directory = posixpath.dirname(self.stats) if self.stats.endswith("stats.json") else self.stats
        return JobOutput.open(directory or ".")

    def class_weights(self) -> dict[str, float]:
        counts = split_counts(self.output(), self.split)
        return class_weights(counts, self.scheme, normalize=self.normalize, max_weight=self.max_weight, **dict(self.params))


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation; boxes, classes and weights always move together.

    Args:
        flip: horizontal flip with probability 0.5.
        crop_min_scale: scale jitter: a square-aspect window of side
            U(crop_min_scale, 1) of the image is cropped (1 disables).
        min_visible: boxes keeping less than this fraction of their area
            inside the crop are dropped, with their class and weight.
        color: random brightness, contrast and saturation.
    """

    flip: bool = True
    crop_min_scale: float = 0.6
    min_visible: float = 0.5
    color: bool = True


def list_files(data: str | Sequence[str], split: str | None = None, default_split: str = "train") -> list[str]:
    """Shard paths: one split of an output folder (through its manifest), a glob, a comma list, or a list.

    Raises:
        DataError: see :func:`storage.job_output.resolve`.
    """
    return resolve(data, split, default_split).files


def one_hot_classes(classes: tf.Tensor, num_classes: int) -> tf.Tensor:
    """``[..., N]`` ids from 1 (0 = padding) -> ``[..., N, num_classes]`` one-hot, zero rows for padding."""
    return tf.one_hot(tf.cast(classes, tf.int32) - 1, num_classes, dtype=tf.float32)


@dataclasses.dataclass(frozen=True)
class Draws:
    """One image's uniform draws in [0, 1), named: drawn together as one ``[COUNT]`` tensor per image from
    the input function's seed (so the stream of draws is fixed by the seed alone), then read by name."""

    COUNT: ClassVar[int] = 7
    flip: tf.Tensor
    crop_scale: tf.Tensor
    crop_offset: tf.Tensor  # [2]: y, x
    saturation: tf.Tensor
    contrast: tf.Tensor
    brightness: tf.Tensor

    @classmethod
    def of(cls, u: tf.Tensor) -> Draws:
        return cls(u[0], u[1], u[2:4], u[4], u[5], u[6])


@dataclasses.dataclass(frozen=True)
class CropGeometry:
    """Where an image's pixels went, for its boxes: the crop window and the image's size (pixels), the
    mirror (1.0 or 0.0) and the share of each padded axis the resized image covers. It travels from the
    per-image stage to the per-batch one as a ``[9]`` float tensor (:meth:`pack`, :meth:`unpack`)."""

    offset_y: tf.Tensor
    offset_x: tf.Tensor
    height: tf.Tensor
    width: tf.Tensor
    image_height: tf.Tensor
    image_width: tf.Tensor
    flip: tf.Tensor
    ratio_y: tf.Tensor
    ratio_x: tf.Tensor

    def pack(self) -> tf.Tensor:
        head = tf.cast(tf.stack([self.offset_y, self.offset_x, self.height, self.width, self.image_height, self.image_width, self.flip]), tf.float32)
        return tf.concat([head, tf.stack([self.ratio_y, self.ratio_x])], axis=0)

    @classmethod
    def unpack(cls, batch: tf.Tensor) -> CropGeometry:
        """A ``[B, 9]`` batch of packed geometries -> one with ``[B]`` fields."""
        return cls(*tf.unstack(batch, axis=1))


def _window(shape: tf.Tensor, draws: Draws, cfg: Augment | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The crop window (offset y, offset x, height, width, in pixels) and whether to flip.
 Without scale jitter the window is
    the whole image; its side is otherwise U(crop_min_scale, 1) of the
    image's, at a uniform offset.
    """
    h, w = shape[0], shape[1]
    flip = draws.flip < 0.5 if cfg is not None and cfg.flip else tf.constant(False)
    if cfg is None or cfg.crop_min_scale >= 1.0:
        return tf.constant(0), tf.constant(0), h, w, flip
    scale = cfg.crop_min_scale + (1.0 - cfg.crop_min_scale) * draws.crop_scale
    hw = tf.cast(shape[:2], tf.float32)
    side = tf.maximum(tf.cast(hw * scale, tf.int32), 1)
    offset = tf.minimum(tf.cast(draws.crop_offset * tf.cast(shape[:2] - side + 1, tf.float32), tf.int32), shape[:2] - side)
    return offset[0], offset[1], side[0], side[1], flip


def _crop_and_flip(image: tf.Tensor, oy: tf.Tensor, ox: tf.Tensor, ch: tf.Tensor, cw: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """The window, mirrored left-right when ``flip``, without a branch.

    The mirror is a reverse whose axis list is ``[1]`` or empty. Both
    alternatives measured slower on 128-pixel images: a gather of reversed
    columns (+100 us an image), a strided slice with stride -1 (+270 us).
    """
    axis = tf.slice(tf.constant([1]), [0], tf.reshape(tf.cast(flip, tf.int32), [1]))
    return tf.reverse(image[oy : oy + ch, ox : ox + cw], axis)


def _color(image: tf.Tensor, draws: Draws) -> tf.Tensor:
    """Random saturation (blend with gray), contrast (around the mean) and brightness.

    The three steps are one affine map per pixel, ``M @ rgb + c`` with
    ``M = a I + b/3 J``: blending with gray keeps the image mean, so they
    fold into a single 3x3 matrix product (no HSV round trip), about four
    times cheaper than applying them one after the other (measured).
    """
    saturation, contrast, brightness = 0.8 + 0.4 * draws.saturation, 0.8 + 0.4 * draws.contrast, 64.0 * draws.brightness - 32.0
    a, b = contrast * saturation, contrast * (1.0 - saturation)
    c = (1.0 - contrast) * tf.reduce_mean(image) + brightness
    mix = a * tf.eye(3) + b / 3.0
    out = tf.reshape(tf.matmul(tf.reshape(image, [-1, 3]), mix), tf.shape(image)) + c
    return tf.clip_by_value(out, 0.0, 255.0)


def _fit(image: tf.Tensor, size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize keeping the aspect ratio and pad at the bottom and right to ``size``.

    Returns the float image and the fraction of each axis (y, x) the resized
    image covers, which scales the boxes to the padded frame.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.constant(size, tf.float32)
    scale = tf.reduce_min(target / shape)
    new = tf.minimum(tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1), tf.constant(size, tf.int32))
    # resize a float image: TF's resize of uint8 input is markedly slower (measured)
    image = tf.image.resize(tf.cast(image, tf.float32), new)
    pad = tf.constant(size, tf.int32) - new
    image = tf.pad(image, [[0, pad[0]], [0, pad[1]], [0, 0]])
    image.set_shape([size[0], size[1], 3])
    return image, tf.cast(new, tf.float32) / target


def _parse_spec(keys: set[str]) -> dict[str, Any]:
    # per-box keys as RaggedFeature: parse_example gives RaggedTensors, made dense in one op per key
    spec = {}
    for key, feature in parse_spec().items():
        if key in keys:
            spec[key] = tf.io.RaggedFeature(feature.dtype) if isinstance(feature, tf.io.VarLenFeature) else feature
    return spec


_COORDS = tuple(f"image/object/bbox/{k}" for k in ("ymin", "xmin", "ymax", "xmax"))
# per image between the stages; dropped from the output
_ENCODED, _DRAWN, _GEOMETRY, _BOXES_IN, _NAME = "_encoded", "_drawn", "_geometry", "_boxes_in", "_name"


def _label_parser(max_boxes: int, weights: Any, seed: int) -> Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]:
    """Stage 1, per group of serialized records: parse, weight fallbacks, cut and pad the boxes.

    The first ``max_boxes`` boxes of each record are kept (in record order,
    before augmentation drops any). Vectorized over the group: per image, each
    of these steps was a handful of small ops, and inside ``tf.data`` small
    ops cost more than their arithmetic.
    """
    needed = {"image/encoded", "image/filename", "image/source_id", "image/object/class/label", "image/object/class/weight", "image/object/weight", *_COORDS}
    if isinstance(weights, ReweightSpec):
        needed |= {"image/object/class/text", "image/object/difficult", "image/object/is_crowd", "image/object/truncated"}
    spec = _parse_spec(needed)  # parsing unused keys costs time
    table = None
    multipliers = BoxMultipliers()
    if isinstance(weights, ReweightSpec):
        by_class = weights.class_weights()
        multipliers = weights.multipliers
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(by_class)), tf.constant(list(by_class.values()), tf.float32)),
            default_value=1.0,
        )

    def parse(group: tf.Tensor, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        p = tf.io.parse_example(serialized, spec)
        n = p[_COORDS[0]].row_lengths()
        names = tf.where(p["image/filename"] != "", p["image/filename"], p["image/source_id"])  # for warnings
        for key in _COORDS[1:]:
            tf.debugging.assert_equal(p[key].row_lengths(), n, message=f"boxweight: {key} and {_COORDS[0]} differ in length in a record")

        def per_box(key: str, fallback: Any, values: tf.RaggedTensor | None = None) -> tf.Tensor:
            """``[B, max_boxes]``: the key's values where a record has one per box, else ``fallback``."""
            ragged = p[key] if values is None else values
            dense = ragged.to_tensor(shape=[None, max_boxes])
            return tf.where((ragged.row_lengths() == n)[:, None], dense, fallback)

        boxes = tf.stack([p[key].to_tensor(shape=[None, max_boxes]) for key in _COORDS], axis=2)
        classes = tf.cast(per_box("image/object/class/label", tf.constant(0, tf.int64)), tf.int32)
        if weights == "none":
            box_w = tf.ones_like(boxes[:, :, 0])
        elif table is not None:
            text = p["image/object/class/text"]
            box_w = per_box("image/object/class/text", 1.0, values=tf.ragged.map_flat_values(table.lookup, text))
            for key, factor in (("difficult", multipliers.difficult), ("is_crowd", multipliers.crowd), ("truncated", multipliers.truncated)):
                if factor != 1.0:
                    box_w *= tf.where(per_box(f"image/object/{key}", tf.constant(0, tf.int64)) > 0, factor, 1.0)
        else:
            box_w = per_box("image/object/class/weight", per_box("image/object/weight", 1.0))
        valid = tf.range(max_boxes)[None, :] < tf.cast(n, tf.int32)[:, None]
        return {
            # one draw per group, not four per image; stateless, from the seed and the group's place in the stream,
            # so the same seed draws the same numbers however the parallel map schedules the groups
            _DRAWN: tf.random.stateless_uniform([tf.shape(serialized)[0], Draws.COUNT], seed=_stream_seed(seed, _AUGMENT_STREAM, group)),
            _ENCODED: p["image/encoded"],
            _NAME: names,
            _BOXES_IN: tf.cast(n, tf.int32),
            "groundtruth_boxes": tf.where(valid[:, :, None], boxes, 0.0),
            "groundtruth_classes": tf.where(valid, classes, 0),
            "groundtruth_weights": tf.where(valid, box_w, 0.0),
        }

    return parse


def _image_fn(image_size: tuple[int, int], augment: Augment | None) -> Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, dict[str, tf.Tensor]]]:
    """Stage 2, per image: decode, crop, flip, color, resize, pad; the geometry goes on for the boxes.

    Written without ``tf.cond``: inside ``tf.data`` each conditional is a
    function call per image, which at 128-pixel images cost more than the
    decode.
    """
    crop_or_flip = augment is not None and (augment.flip or augment.crop_min_scale < 1.0)

    def decode(x: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        labels = dict(x)
        image = tf.io.decode_image(labels.pop(_ENCODED), channels=3, expand_animations=False)
        shape = tf.shape(image)
        draws = Draws.of(labels.pop(_DRAWN))
        oy, ox, ch, cw, flip = _window(shape, draws, augment)
        if crop_or_flip:
            image = _crop_and_flip(image, oy, ox, ch, cw, flip)
        if augment is not None and augment.color:
            image = _color(tf.cast(image, tf.float32), draws)  # at the source size: before upscaling is cheaper
        image, ratio = _fit(image, image_size)
        labels[_GEOMETRY] = CropGeometry(oy, ox, ch, cw, shape[0], shape[1], tf.cast(flip, tf.int32), ratio[0], ratio[1]).pack()
        return image, labels

    return decode


def _box_fn(max_boxes: int, augment: Augment | None) -> Callable[[tf.Tensor, dict[str, tf.Tensor]], tuple[tf.Tensor, dict[str, tf.Tensor]]]:
    """Stage 3, per batch: move the boxes with the pixels, drop those cut by the crop, warn about cut images.

    Boxes are clipped to the crop window; those keeping less than
    ``min_visible`` of their area are dropped with their classes and weights,
    and the rest move up in order. Then one affine map per coordinate takes
    them to the padded frame, a mirrored x swapping xmin and xmax.
    """
    crop = augment is not None and augment.crop_min_scale < 1.0

    def move(images: tf.Tensor, labels: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        labels = dict(labels)
        n, names, g = labels.pop(_BOXES_IN), labels.pop(_NAME), CropGeometry.unpack(labels.pop(_GEOMETRY))
        boxes, classes, box_w = labels["groundtruth_boxes"], labels["groundtruth_classes"], labels["groundtruth_weights"]
        oy, ox, ch, cw, h, w, flip, ry, rx = (
            g.offset_y, g.offset_x, g.height, g.width, g.image_height, g.image_width, g.flip, g.ratio_y, g.ratio_x
        )
        lo = tf.stack([oy / h, ox / w], axis=1)
        size = tf.stack([ch / h, cw / w], axis=1)
        keep = tf.range(max_boxes)[None, :] < tf.minimum(n, max_boxes)[:, None]
        if crop:
            assert augment is not None
            lo4 = tf.concat([lo, lo], axis=1)[:, None, :]
            clipped = tf.clip_by_value(boxes, lo4, lo4 + tf.concat([size, size], axis=1)[:, None, :])
            area = tf.reduce_prod(boxes[:, :, 2:] - boxes[:, :, :2], axis=2)
            visible = tf.reduce_prod(clipped[:, :, 2:] - clipped[:, :, :2], axis=2)
            keep &= visible >= augment.min_visible * area
            boxes = clipped
        # y' = (y - lo) * ratio / size; mirrored: x' = ratio_x - (x - lo_x) * ratio_x / size_x
        mirrored = flip > 0.5
        scale = tf.stack([ry, rx], axis=1) / size * tf.stack([tf.ones_like(rx), tf.where(mirrored, -1.0, 1.0)], axis=1)
        offset = tf.stack([tf.zeros_like(rx), tf.where(mirrored, rx, 0.0)], axis=1) - lo * scale
        boxes = boxes * tf.concat([scale, scale], axis=1)[:, None, :] + tf.concat([offset, offset], axis=1)[:, None, :]
        boxes = tf.where(mirrored[:, None, None], tf.gather(boxes, [0, 3, 2, 1], axis=2), boxes)  # new xmin = old xmax
        if crop:  # kept boxes move up, in order
            order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)
            boxes, classes, box_w, keep = (tf.gather(t, order, batch_dims=1) for t in (boxes, classes, box_w, keep))
        labels["groundtruth_boxes"] = tf.where(keep[:, :, None], boxes, 0.0)
        labels["groundtruth_classes"] = tf.where(keep, classes, 0)
        labels["groundtruth_weights"] = tf.where(keep, box_w, 0.0)
        labels["num_groundtruth_boxes"] = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
        over = n > max_boxes

        def warn() -> tf.Tensor:
            tf.print(
                "boxweight: images", tf.boolean_mask(names, over), "have", tf.boolean_mask(n, over),
                "boxes; keeping the first", max_boxes, output_stream=sys.stderr,
            )
            return tf.constant(0)

        tf.cond(tf.reduce_any(over), warn, lambda: tf.constant(0))
        return images, labels

    return move


def _repeat_by_factor(seed: int) -> Callable[[tf.Tensor, tf.Tensor], tf.data.Dataset]:
    # detectron2's RepeatFactorTrainingSampler: repeat floor(r) times, plus once
    # more with probability frac(r), drawn anew every epoch (the record's place in the stream differs each epoch).
    def repeat(position: tf.Tensor, serialized: tf.Tensor) -> tf.data.Dataset:
        r = tf.io.parse_single_example(serialized, {"image/repeat_factor": tf.io.FixedLenFeature([], tf.float32, 1.0)})["image/repeat_factor"]
        base = tf.floor(r)
        draw = tf.random.stateless_uniform([], seed=_stream_seed(seed, _REPEAT_STREAM, position))
        times = tf.cast(base, tf.int64) + tf.cast(draw < r - base, tf.int64)
        return tf.data.Dataset.from_tensors(serialized).repeat(times)

    return repeat


# Every random draw of the input function derives from its seed: the shuffles take it, and the
# per-element draws are stateless, keyed by (seed, stream) and the element's place in the stream.
_AUGMENT_STREAM, _REPEAT_STREAM, _SHUFFLE_FILES, _SHUFFLE_RECORDS = 1, 2, 3, 4


def _stream_seed(seed: int, stream: int, position: tf.Tensor) -> tf.Tensor:
    """The ``[2]`` seed of a stateless op: (seed, stream) folded into one int64, and the position."""
    return tf.stack([tf.constant(seed * 8 + stream, tf.int64), tf.cast(position, tf.int64)])


def create_input_fn(
    file_pattern: str | Sequence[str],
    batch_size: int,
    is_training: bool,
    *,
    split: str | None = None,
    image_size: tuple[int, int] = (512, 512),
    max_boxes: int = 100,
    weights: str | ReweightSpec = "record",
    repeat_factor_sampling: bool = False,
    augment: Augment | bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    deterministic: bool | None = None,
    compression: str | None = None,
    shuffle_buffer: int = 1024,
    seed: int | None = None,
) -> Callable[[], tf.data.Dataset]:
    """An input function for detection training on boxweight (or TF OD API) records.

    Args:
        file_pattern: a ``boxweight prepare`` output folder (one split is
            read, through its ``manifest.json``), a glob (``DIR/train-*``), a
            comma-separated string or a list/tuple of files or globs; local
            or ``gs://``. Shards in an output folder must be listed in its
            manifest.
        batch_size: global batch size (divided per replica with ``input_context``).
        is_training: shuffle, repeat forever, augment, drop the last partial batch.
        split: the split to read from an output folder; default ``train``
            when training, else ``val``. Not allowed with globs or files.
        image_size: (height, width) of the padded output images.
        max_boxes: boxes per image; extra boxes are cut with a warning naming
            the image and its count. The first ``max_boxes`` of the record
            are kept, in record order, before augmentation may drop some:
            the kept set never depends on the random crop.
        weights: ``'record'`` (class/weight, else object/weight, else ones),
            ``'none'`` (ones), or a :class:`ReweightSpec`.
        repeat_factor_sampling: repeat images per epoch by stochastic rounding
            of ``image/repeat_factor`` (training only).
        augment: ``None`` = :class:`Augment` defaults when training and none
            otherwise; ``False`` = none; or an :class:`Augment`.
        input_context: ``tf.distribute.InputContext``; files are sharded per
            input pipeline.
        deterministic: passed to ``tf.data.Options.deterministic`` (None keeps TF's default).
        compression: ``'GZIP'``, ``''``, or None to infer from ``.gz`` names.
        shuffle_buffer: examples in the shuffle buffer when training.
        seed: every random draw (both shuffles, repeat-factor sampling,
            augmentation) derives from it, so the same seed gives the same
            batches run after run, however the parallel stages are scheduled
            (with ``deterministic`` left None or True). None: a new seed each call.

    Returns:
        A zero-argument callable returning the ``tf.data.Dataset``; call it
        directly, or hand it to an Estimator-era trainer.

    Raises:
        DataError (a ValueError): no file matches, a folder without a complete
            manifest, an unknown split (the message lists those there), or a
            ``ReweightSpec`` from a job with other classes than the records.
        ValueError: a bad ``weights``/``augment`` value.
    """
    if weights not in ("record", "none") and not isinstance(weights, ReweightSpec):
        raise ValueError(f"weights={weights!r}: use 'record', 'none' or a ReweightSpec")
    if augment is None or augment is True:
        aug: Augment | None = Augment() if (is_training or augment is True) else None
    elif augment is False:
        aug = None
    elif isinstance(augment, Augment):
        aug = augment
    else:
        raise ValueError(f"augment={augment!r}: use None, True, False or an Augment")
    shards = resolve(file_pattern, split, "train" if is_training else "val")
    files = shards.files
    if isinstance(weights, ReweightSpec):
        spec_output = weights.output()
        for output in shards.outputs:
            output.check_classes(spec_output.label_map, f"ReweightSpec({weights.stats!r})")
    if compression is None:
        compression = "GZIP" if all(f.endswith(".gz") for f in files) else ""

    size = (int(image_size[0]), int(image_size[1]))
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 59:
        raise ValueError(f"seed={seed!r}: use an int from 0 to 2**59 - 1, or None")

    def input_fn() -> tf.data.Dataset:
        per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
        ds = tf.data.Dataset.from_tensor_slices(files)
        if input_context and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if is_training:
            ds = ds.shuffle(len(files), seed=seed * 8 + _SHUFFLE_FILES, reshuffle_each_iteration=True).repeat()
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
            cycle_length=min(len(files), 16),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
        if is_training and repeat_factor_sampling:
            ds = ds.enumerate().flat_map(_repeat_by_factor(seed))
        if is_training:
            ds = ds.shuffle(shuffle_buffer, seed=seed * 8 + _SHUFFLE_RECORDS)
        # three stages: parse per group of records, pixels per image, boxes per batch
        ds = ds.batch(_PARSE_GROUP).enumerate()
        ds = ds.map(_label_parser(max_boxes, weights, seed), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
        ds = ds.unbatch().map(_image_fn(size, aug), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
        ds = ds.batch(per_replica, drop_remainder=is_training).map(_box_fn(max_boxes, aug)).prefetch(AUTOTUNE)
        if deterministic is not None:
            options = tf.data.Options()
            options.deterministic = deterministic
            ds = ds.with_options(options)
        return ds

    return input_fn
