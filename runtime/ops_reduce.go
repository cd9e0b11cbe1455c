package runtime

func registerReduce[T Float](r registry[T]) {}
