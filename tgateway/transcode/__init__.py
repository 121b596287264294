"""Video: FFmpeg discovery, probing, the argv builder, the ffmpeg process adapter, the job queue."""
