"""The daemon: wiring (app), the consume loop and the background lag tracker."""
