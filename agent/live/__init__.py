"""The live cycle: poll -> snapshot (assemble) -> decide -> write -> publish (loop), the in-process
hub the sinks read, the runtime that wires them, the audit log, the PCC meter watch."""
