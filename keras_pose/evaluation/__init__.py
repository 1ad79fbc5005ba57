"""keras_pose.evaluation"""
