"""keras_pose.training"""
