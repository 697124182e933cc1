"""The cockpit's services, shared by the cockpit and the headless commands: the session, the load
engine and its phases, probes, prompts, the recorder and its windows, the chaos timeline, the HPA
explainer, and the sandbox launcher.
"""
