"""The department portal (issue 15): a server-rendered web application over the warehouse and
the publications. It sits at the top with the CLI: it imports warehouse/, tasks/, expectations/
and datashare/; nothing imports it."""
