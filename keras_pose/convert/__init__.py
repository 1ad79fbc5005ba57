"""keras_pose.convert"""
