"""Training with the weights: the ``tf.data`` input function (:mod:`.input_fn`), the weighted Keras
losses (:mod:`.losses`) and the KerasHub bridge (:mod:`.kerashub`). These import TensorFlow or Keras;
the rest of :mod:`weighting` does not."""
