"""``python -m keras_pose.data.synthetic OUT_DIR``: write the synthetic COCO layout."""

from keras_pose.data.synthetic.dataset import main

main()
