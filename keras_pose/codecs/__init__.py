"""keras_pose.codecs"""
