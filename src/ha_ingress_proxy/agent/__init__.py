"""The node agent: at every boot, metadata -> role -> NodePlan -> the role-dependent files.

    sources.py   read what each source says (kernel command line, cloud-init
                 instance data, the root-only node file, the host's addresses)
    resolve.py   site model + what the sources say -> one Decision, or a Refusal
    secrets.py   the stats password -> secrets.env (root-only), never logged
    files.py     bounded reads, atomic byte-compared writes below --root
    apply.py     `apply`: the above, then the same plan + render as the build
    state.py     the state file: one frozen dataclass, one writer, one reader
    status.py    `status`: the state file, the VIPs held, haproxy's backends
    cli.py       the `apply` and `status` subcommands

Every path the agent reads or writes is below --root (default /); messages
name paths as they are on the node (`/run/cloud-init/instance-data.json`), so
they read the same in tests and in the journal. docs/agent.md has the rules.
"""
