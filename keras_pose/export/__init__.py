"""keras_pose.export"""
