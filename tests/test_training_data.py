"""The resumable, shardable training stream of keras_pose.training.data."""

import numpy as np
import pytest

from keras_pose.training.data import RecordOrder, TrainingInput


def elements(dataset, count):
    return [tuple(int(v) for v in item) for item in dataset.take(count).as_numpy_iterator()]


def test_each_pass_is_a_new_permutation_with_fresh_seeds():
    order = RecordOrder(7, seed=5)
    stream = elements(order.stream(), 21)
    passes = [stream[i:i + 7] for i in range(0, 21, 7)]
    for visit in passes:
        assert sorted(index for index, _ in visit) == list(range(7))
    assert len({tuple(index for index, _ in visit) for visit in passes}) > 1
    assert len({seed for _, seed in stream}) == 21
    assert elements(RecordOrder(7, seed=5).stream(), 21) == stream
    assert elements(RecordOrder(7, seed=6).stream(), 21) != stream


@pytest.mark.parametrize("start", [1, 6, 7, 13])
def test_starting_later_is_the_same_stream_without_its_head(start):
    order = RecordOrder(7, seed=1)
    assert elements(order.stream(start), 10) == elements(order.stream(), start + 10)[start:]


def test_shards_split_every_pass_between_workers():
    order = RecordOrder(10, seed=2)
    full = elements(order.stream(), 10)
    shards = [elements(order.stream(0, 3, i), order.shard_size(3, i)) for i in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3]
    for index, shard in enumerate(shards):
        assert shard == full[index::3]
    later = elements(order.stream(5, 3, 1), 4)
    assert later == elements(order.stream(0, 3, 1), 9)[5:]
    with pytest.raises(ValueError, match="shard_index"):
        order.shard_size(2, 2)


@pytest.fixture(scope="module")
def tiny_input(tmp_path_factory):
    from keras_pose.data.coco import load_coco_records, read_dataset_info
    from keras_pose.data.synthetic import make_coco_layout
    from keras_pose.data.transforms import resolve_augment
    from keras_pose.models import TinyPoseModel

    paths = make_coco_layout(tmp_path_factory.mktemp("synthetic"), 8, 2)["train2017"]
    info = read_dataset_info(paths["annotation_file"])
    records = load_coco_records(paths["annotation_file"], paths["image_dir"], info)
    spec = TinyPoseModel(input_shape=(32, 24, 3)).spec
    return TrainingInput(spec, records, info, resolve_augment(spec, None), global_batch=4, seed=3)


def test_a_resumed_input_yields_exactly_the_batches_that_were_left(tiny_input):
    first = list(tiny_input.dataset(0).take(4).as_numpy_iterator())
    resumed = list(tiny_input.dataset(start_step=2).take(2).as_numpy_iterator())
    for expected, got in zip(first[2:], resumed):
        np.testing.assert_array_equal(expected[0], got[0])
        for name in expected[1]:
            np.testing.assert_array_equal(expected[1][name], got[1][name])
            np.testing.assert_array_equal(expected[2][name], got[2][name])
    assert not np.array_equal(first[0][0], first[1][0])


def test_replicas_share_one_stream(tiny_input):
    whole = list(tiny_input.dataset(0).take(2).as_numpy_iterator())
    halves = list(tiny_input.dataset(0, num_replicas=2).take(4).as_numpy_iterator())
    for step in range(2):
        np.testing.assert_array_equal(
            whole[step][0], np.concatenate([halves[2 * step][0], halves[2 * step + 1][0]]))


def test_batches_must_hold_whole_people_per_replica(tiny_input):
    import dataclasses

    from keras_pose.data.transforms import AugmentConfig

    cpn_like = dataclasses.replace(tiny_input, augment=AugmentConfig(scheme="cpn"), global_batch=8)
    assert cpn_like.copies == 4 and cpn_like.check_batch(2) == 4
    with pytest.raises(ValueError, match="multiple of the 4 crops"):
        cpn_like.check_batch(4)
    with pytest.raises(ValueError, match="does not split evenly"):
        tiny_input.check_batch(3)
