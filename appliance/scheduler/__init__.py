"""The scheduler: takes accepted jobs from MongoDB, runs their plans on runners, follows
them to the end (``core.Scheduler``).

    core          the process: tasks, wake-ups, leases, heartbeat, graceful stop
    ├── following statuses, cancellations, time limits, next steps, job ends
    │   └── starting  claims, first steps, adoption of orphaned jobs
    │       └── base  shared state
    ├── housekeeping  slow chores on their own cadence
    │   └── retention deleting old jobs and uploads, in two phases
    └── held      what is known of each followed job
"""
