"""The Measurement Set: its column layout, the template and parts of a group, joining them,
validating the result and publishing it."""
