"""keras_pose.utils"""
