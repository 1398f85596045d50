"""The directory Ansible loads connection plugins from (``ANSIBLE_CONNECTION_PLUGINS``)."""
