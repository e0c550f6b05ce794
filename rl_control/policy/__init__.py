"""ONNX policy runtime: loading, checking and guarding exported policies (no torch, gymnasium, rclpy)."""
