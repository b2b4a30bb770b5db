# metadata.go: look _id up with the expression its unique index is built on.
s|IDColumn = DefaultColumn + "->'\$\._id'"|IDColumn = DefaultColumn + `->"_id"`|
# collection.go (Query and Explain): push an _id equality down even beside other fields;
# the handler applies the whole filter to every returned document anyway.
s|^\tif params\.Filter\.Len() == 1 {$|\tif params.Filter != nil {|
