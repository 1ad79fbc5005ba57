"""keras_pose.inference"""
