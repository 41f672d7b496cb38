"""The in-app inbox: messages a contact reads in the planner's app, with a live stream."""
