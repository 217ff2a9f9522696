"""model.cache: the widgets' model choice, one-model cache and shared weights (Qt-free)."""
import gc

from corrflow_napari.model.cache import (
    LAB,
    SCRATCH,
    SHIPPED,
    SharedWeights,
    describe_weights,
    get_model,
)


def test_describe_weights():
    assert describe_weights(SHIPPED) == "shipped CorrFlow weights"
    assert describe_weights(LAB) == "Lab-colour baseline"
    assert describe_weights(SCRATCH) == "an untrained model"
    assert describe_weights("/x/clip_ft.pt") == "weights clip_ft.pt"


def test_models_are_cached_unless_fresh_or_untrained():
    a = get_model(LAB, "cpu")
    assert get_model(LAB, "cpu") is a
    assert get_model(LAB, "cpu", fresh=True) is not a
    assert get_model(SCRATCH, "cpu") is not get_model(SCRATCH, "cpu")
    assert not get_model(SCRATCH, "cpu").training


class Follower:
    def __init__(self):
        self.paths = []
        self.alive = True

    def add(self, path):
        self.paths.append(path)
        return self.alive


def test_shared_weights_tell_followers_and_drop_gone_ones(tmp_path):
    shared = SharedWeights()
    first, second = Follower(), Follower()
    shared.follow(first.add)
    ckpt = tmp_path / "ft.pt"
    ckpt.write_bytes(b"x")
    shared.use(ckpt)
    assert first.paths == [str(ckpt.resolve())]
    shared.follow(second.add)                        # a later picker gets it at once
    assert second.paths == [str(ckpt.resolve())]
    first.alive = False                              # e.g. its Qt widget was deleted
    shared.use(ckpt)
    shared.use(ckpt)
    assert len(first.paths) == 2 and len(second.paths) == 3
    del second                                       # bound methods are held weakly
    gc.collect()
    shared.use(ckpt)
    assert shared._followers == []
