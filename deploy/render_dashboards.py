def dashboards():
    return {}
