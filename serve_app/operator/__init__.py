"""The operator API's shared parts: who may do what, typed models, SSE framing, fabric handles.

Its routes live in serve_app/routes/ (fleet.py, events.py, workspaces.py, workspace_files.py,
control.py); see the README's "Operator API" section for the list.
"""
