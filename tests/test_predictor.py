"""Predictor (image + boxes -> image keypoints) and recipes/predict.py, with a real tiny model.

``ColorDotModel`` is a real Keras ``PoseModel``: its heatmap channel k is the crop's colour
channel k (in the model's channel order), average-pooled by the stride. An image with one
bright dot per colour therefore has known keypoints, and every step of the predictor (crop,
channel order, batching, flip test, decode, back-projection) shows in the result.
"""

import importlib.util
import os

import cv2
import keras
import numpy as np
import pytest

from keras_pose.data.dataset_info import DatasetInfo
from keras_pose.inference import Predictor
from keras_pose.models.base import IMAGE_INPUT, PoseModel
from keras_pose.spec import MEGVII, MSRA, CodecSpec, OutputSpec, PoseSpec

INPUT_SIZE = (64, 48)
STRIDE = 4
CODECS = {
    "msra": CodecSpec(MSRA, sigma=1.0, peak=1.0),
    "megvii": CodecSpec(MEGVII, kernel_size=5, decode_blur=5),
}
# one keypoint per colour channel, no left/right pairs (a flip keeps every colour in place)
COLORS = DatasetInfo("dots", ("blue", "green", "red"), (), ((0, 1), (1, 2)), (0.05,) * 3)
# BGR image: dot centres (x, y) of the blue, green and red dots
DOTS = {"blue": (212.0, 160.0), "green": (248.0, 300.0), "red": (190.0, 380.0)}
BOX = (150.0, 120.0, 120.0, 300.0)


@keras.saving.register_keras_serializable(package="keras_pose_tests")
class ColorDotModel(PoseModel):
    def __init__(self, codec="msra", channel_order="BGR", name="color_dots", **kwargs):
        image = keras.Input((*INPUT_SIZE, 3), name=IMAGE_INPUT)
        pooled = keras.layers.AveragePooling2D(STRIDE, name="pool")(image)
        heatmaps = keras.layers.Rescaling(CODECS[codec].peak / 255.0, name="heatmaps")(pooled)
        spec = PoseSpec(
            family="dots",
            input_size=INPUT_SIZE,
            num_keypoints=3,
            channel_order=channel_order,
            outputs=(OutputSpec("heatmaps", STRIDE, CODECS[codec]),),
            box_extension=(1.25, 1.25),
            flip_test=True,
        )
        super().__init__(inputs=image, outputs={"heatmaps": heatmaps}, spec=spec, name=name,
                         **kwargs)
        self._arguments = {"codec": codec, "channel_order": channel_order}

    def get_config(self):
        return {**super().get_config(), **self._arguments}


def dot_image(height=480, width=400):
    image = np.zeros((height, width, 3), np.uint8)
    for channel, (x, y) in enumerate(DOTS.values()):
        color = [0, 0, 0]
        color[channel] = 255
        cv2.circle(image, (int(x), int(y)), 12, color, -1)
    return image


def cell_in_image_px():
    """One heatmap cell of the test box's crop, in image pixels (the crop's scale)."""
    from keras_pose.data.transforms import box_to_center_size

    _, size = box_to_center_size(BOX, INPUT_SIZE[1] / INPUT_SIZE[0], (1.25, 1.25))
    return STRIDE * size[1] / INPUT_SIZE[0]


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("flip_test", [False, True])
def test_keypoints_land_on_the_dots_in_image_pixels(codec, flip_test):
    predictor = Predictor(ColorDotModel(codec), COLORS, flip_test=flip_test)
    poses = predictor(dot_image(), [BOX])
    assert poses.shape == (1, 3, 3) and poses.dtype == np.float64
    truth = np.array(list(DOTS.values()))
    # decoded cell centre +- the refinement step: within 3/4 of a cell of the dot
    assert np.abs(poses[0, :, :2] - truth).max() <= 0.75 * cell_in_image_px()
    background = 0.0 if codec == "msra" else 0.5  # score of a black cell
    assert np.all(poses[0, :, 2] > background + 0.3)


def test_channel_order_follows_the_spec():
    image = dot_image()
    bgr = Predictor(ColorDotModel(channel_order="BGR"), COLORS, flip_test=False)(image, [BOX])
    rgb = Predictor(ColorDotModel(channel_order="RGB"), COLORS, flip_test=False)(image, [BOX])
    # an RGB model's first channel is red: keypoint 0 is the red dot
    np.testing.assert_allclose(rgb[0, 0], bgr[0, 2])
    np.testing.assert_allclose(rgb[0, 2], bgr[0, 0])


def test_boxes_elsewhere_in_the_image_map_back_consistently():
    """The same dots shifted by (dx, dy) in a bigger image, with the box shifted alike."""
    model = ColorDotModel()
    predictor = Predictor(model, COLORS, flip_test=False)
    image = dot_image()
    big = np.zeros((700, 900, 3), np.uint8)
    big[100:580, 300:700] = image
    box = np.array(BOX) + [300, 100, 0, 0]
    np.testing.assert_allclose(
        predictor(big, [box])[0, :, :2], predictor(image, [BOX])[0, :, :2] + [300, 100], atol=1e-6
    )


def test_predict_many_batches_across_images_in_order():
    predictor = Predictor(ColorDotModel(), COLORS, flip_test=False, batch_size=2)
    image = dot_image()
    boxes = [np.array([BOX, np.array(BOX) + [5, -4, 10, 0], np.array(BOX) * [1, 1, 0.9, 1.1]]),
             np.zeros((0, 4)),
             np.array([np.array(BOX) + [-6, 3, 0, 12], BOX])]
    results = list(predictor.predict_many((image, b) for b in boxes))
    assert [r.shape for r in results] == [(3, 3, 3), (0, 3, 3), (2, 3, 3)]
    for result, group in zip(results, boxes):
        for pose, box in zip(result, group):
            np.testing.assert_allclose(pose, predictor(image, [box])[0], atol=1e-6)


def test_image_path_and_array_agree(tmp_path):
    path = tmp_path / "dots.png"
    cv2.imwrite(str(path), dot_image())
    predictor = Predictor(ColorDotModel(), COLORS, flip_test=False)
    np.testing.assert_array_equal(predictor(str(path), [BOX]), predictor(dot_image(), [BOX]))


def test_defaults_come_from_the_spec():
    predictor = Predictor(ColorDotModel(), COLORS)
    assert predictor.flip_test is True and predictor.codec.heatmap_size == (16, 12)
    with pytest.raises(ValueError, match="pass its dataset_info"):
        Predictor(ColorDotModel())  # 3 keypoints: COCO-17 is not a default
    with pytest.raises(ValueError, match="has 17 keypoints"):
        from keras_pose.data.dataset_info import COCO17

        Predictor(ColorDotModel(), COCO17)
    with pytest.raises(TypeError, match="PoseSpec"):
        Predictor(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))


def test_clear_errors_for_bad_inputs(tmp_path):
    predictor = Predictor(ColorDotModel(), COLORS, flip_test=False)
    image = dot_image()
    with pytest.raises(ValueError, match="uint8"):
        predictor(image.astype(np.float32), [BOX])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor(image[..., 0], [BOX])
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\)"):
        predictor(image, [[1, 2, 3]])
    with pytest.raises(ValueError, match="box 1"):
        predictor(image, [BOX, [0, 0, -5, 10]])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predictor(str(tmp_path / "missing.png"), [BOX])


# ------------------------------------------------------------------------------------------
# recipes/predict.py


def load_recipe():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "recipes", "predict.py")
    spec = importlib.util.spec_from_file_location("predict_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predict_recipe_writes_a_png_with_the_skeleton(tmp_path, capsys):
    import json

    model_path = tmp_path / "dots.keras"
    ColorDotModel().save(model_path)
    image_path = tmp_path / "dots.png"
    cv2.imwrite(str(image_path), dot_image())
    annotations = tmp_path / "dots.json"
    annotations.write_text(json.dumps({
        "images": [], "annotations": [],
        "categories": [COLORS.to_coco_category()],
    }))
    out = tmp_path / "out" / "pose.png"
    recipe = load_recipe()
    status = recipe.main([str(image_path), "--keras", str(model_path), "--boxes",
                          ",".join(str(v) for v in BOX), "--keypoints-from", str(annotations),
                          "--out", str(out), "--no-flip"])
    assert status == 0
    drawn = cv2.imread(str(out))
    assert drawn.shape == dot_image().shape
    # the limb green -> red is drawn between the two dots, where the input image is black
    green, red = np.array(DOTS["green"]), np.array(DOTS["red"])
    middle = ((green + red) / 2).round().astype(int)
    assert dot_image()[middle[1], middle[0]].max() == 0
    assert drawn[middle[1] - 3 : middle[1] + 4, middle[0] - 3 : middle[0] + 4].max() > 100
    printed = capsys.readouterr().out
    assert "person 0" in printed and "red" in printed and str(out) in printed


def test_predict_recipe_rejects_bad_arguments(tmp_path, capsys):
    recipe = load_recipe()
    with pytest.raises(SystemExit):
        recipe.main(["image.png", "--keras", "m.keras", "--boxes", "1,2,3"])
    assert "x,y,w,h" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(["image.png", "--boxes", "1,2,3,4"])  # neither --model nor --keras
