package runtime

func registerSample[T Float](r registry[T]) {}
