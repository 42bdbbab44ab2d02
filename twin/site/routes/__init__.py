"""The site server's API areas: the site as the broker shows it, the lines through the proxy, the viewer."""
