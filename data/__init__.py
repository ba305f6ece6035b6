"""headnode's shipped files, installed as the package `headnode_data`: the default configuration, the transfer
drivers' confs (tm/), the sample VM templates (templates/) and the guest's boot script (guest/)."""
