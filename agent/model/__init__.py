"""The data model: what the agent saw (snapshot), what it decided (plan), what operators asked
(operator), what is wrong (alarms), and how the site is described (config, tomlcheck)."""
