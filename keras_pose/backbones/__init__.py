"""keras_pose.backbones"""
