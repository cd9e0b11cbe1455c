Bout_0Jzjš®34
À