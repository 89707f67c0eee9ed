"""os-ken applications (import these only in the controller process: they pull in os-ken)."""
