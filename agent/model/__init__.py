"""The data model: what the agent saw (snapshot) and which points it holds (points), what it
decided (plan), what operators asked (operator), what is wrong (alarms), and how the site is
described (config; the TOML reading itself is the neutral common.tomlcheck)."""
