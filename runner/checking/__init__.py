"""The checking side (`postwright validate` and `plan`): one repository state checked, the
history walked commit by commit, the plan of a change, and the reports of findings."""
